"""The caller's service identity as the local sidecar forwards it in
`x-forwarded-client-cert` (XFCC).

Only the element the service's own sidecar wrote counts. With
`forward_client_cert_details: SANITIZE_SET` (the local sidecars, and the Istio sidecars
through the `proxy.istio.io/config` annotation the manifests set) the header holds that
one element; with APPEND_FORWARD (Istio's default) the sidecar appends it after whatever
the caller sent, so it is the last element in either case. Elements before it are the
caller's own words and never count, nor does anything but the exact SPIFFE id
`spiffe://<trust domain>/ns/<namespace>/sa/<known account>`.
"""

from __future__ import annotations

from collections.abc import Collection

HEADER = "x-forwarded-client-cert"


def _split_unquoted(text: str, separator: str) -> list[str]:
    """`text` split on `separator` outside double quotes (XFCC quotes the values that
    hold `,`, `;` or `=`, such as a subject)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def last_element(header: str) -> str:
    """The last element of an XFCC header: the one the nearest proxy appended.

    The header is read from its end, so an unbalanced quote that a caller put in an
    earlier element cannot swallow the element after it."""
    reversed_parts = _split_unquoted(header[::-1], ",")
    return reversed_parts[0][::-1].strip()


def uris(element: str) -> list[str]:
    """The `URI=` values of one XFCC element (unquoted)."""
    values = []
    for pair in _split_unquoted(element, ";"):
        key, separator, value = pair.partition("=")
        if separator and key.strip().lower() == "uri":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
    return values


def service_account(
    header: str, trust_domain: str, namespace: str, accounts: Collection[str]
) -> str | None:
    """The service account of the mTLS peer, or None when the sidecar's element does not
    name exactly one known SPIFFE id of this trust domain and namespace."""
    found = uris(last_element(header))
    if len(found) != 1:
        return None
    prefix = f"spiffe://{trust_domain}/ns/{namespace}/sa/"
    uri = found[0]
    if not uri.startswith(prefix):
        return None
    account = uri.removeprefix(prefix)
    return account if account in accounts else None
