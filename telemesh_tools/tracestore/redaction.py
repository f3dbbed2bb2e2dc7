"""What the local trace store refuses to keep, whoever sent it.

Telemesh's own spans carry identifiers only. Envoy's spans carry addresses by default
(`peer.address`, `upstream_address`, URLs with host and port); like a collector's
redaction processor, the receiver drops every attribute that names or holds a network
address or SDP before it stores a span.
"""

from __future__ import annotations

import ipaddress
import re

# Attribute keys that hold addresses in the OpenTelemetry and Envoy conventions.
ADDRESS_KEYS = re.compile(
    r"(^|\.)(peer\.address|upstream_address|downstream_address|net\.peer\.(ip|name|port)"
    r"|net\.host\.(ip|name|port)|server\.address|server\.port|client\.address|client\.port"
    r"|network\.(peer|local)\.(address|port)|http\.url|url\.full|http\.host|node_id"
    r"|guid:x-forwarded-for|x-forwarded-for|http\.client_ip)$"
)
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{0,4}\b")
_SDP = re.compile(r"(^|\n)(v=0|a=candidate|a=fingerprint|c=IN )")


def holds_address(value: str) -> bool:
    for candidate in _IPV4.findall(value) + _IPV6.findall(value):
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            continue
        return True
    return False


def keep(key: str, value: object) -> bool:
    """Whether an attribute may be stored."""
    if ADDRESS_KEYS.search(key):
        return False
    return not (isinstance(value, str) and (holds_address(value) or _SDP.search(value)))
