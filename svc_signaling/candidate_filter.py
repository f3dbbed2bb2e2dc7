"""Which remote ICE candidates the echo peer may send connectivity checks to.

The echo peer answers any signed-in caller's offer and then sends STUN binding requests
to every address the offer names: left alone, that is a port scanner aimed wherever the
caller likes (the service's own loopback, the private network it runs in). Only
globally routable unicast addresses pass. Loopback passes too when both ends run on one
machine (`TELEMESH_SIGNALING_PRECALL_ALLOW_LOOPBACK`: tests, the demo, `telemesh up`).

mDNS (`.local`) and other host names never pass: what they resolve to is known only
after aioice has resolved them, too late to check, and a caller on the internet is never
on the echo peer's link, so such a name could only ever lead somewhere local.
"""

from __future__ import annotations

import ipaddress

CANDIDATE_PREFIX = "a=candidate:"
END_OF_CANDIDATES = "a=end-of-candidates"
# NAT64 prefixes embed an IPv4 address that a translator would reach for us (RFC 6052).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def allowed_address(host: str, *, allow_loopback: bool) -> bool:
    """Whether the echo peer may send to `host` (an IP literal; names never pass)."""
    try:
        address: Address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name, mDNS `.local` included
    if allow_loopback and address.is_loopback:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not allowed_address(str(embedded), allow_loopback=False):
            return False
    # is_global leaves out every IANA special-purpose block (RFC 1918, RFC 4193, link-local,
    # loopback, unspecified, shared, documentation, benchmarking, reserved); multicast
    # has to be refused on top.
    return address.is_global and not address.is_multicast


def candidate_allowed(line: str, *, allow_loopback: bool) -> bool:
    """Whether an SDP candidate line (`[a=]candidate:f c transport prio address port
    typ ...`) names an address the echo peer may check."""
    fields = line.removeprefix("a=").removeprefix("candidate:").split()
    if len(fields) < 8 or fields[6] != "typ":
        return False  # malformed: aiortc would reject it or guess
    return allowed_address(fields[4], allow_loopback=allow_loopback)


def filter_offer(sdp: str, *, allow_loopback: bool) -> tuple[str, int]:
    """The offer with every candidate outside the allowed set removed, and how many were.

    The echo peer takes no trickled candidates, so each media section is also marked
    complete (`a=end-of-candidates`): with nothing usable left, ICE fails at once instead
    of holding a pre-call slot until the connect timeout.
    """
    kept: list[str] = []
    dropped = 0
    in_media = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            if in_media:
                kept.append(END_OF_CANDIDATES)
            in_media = True
        if line.startswith(CANDIDATE_PREFIX):
            if not candidate_allowed(line, allow_loopback=allow_loopback):
                dropped += 1
                continue
        elif line.strip() == END_OF_CANDIDATES:
            continue  # added back once, at the end of each media section
        kept.append(line)
    if in_media:
        kept.append(END_OF_CANDIDATES)
    return "\r\n".join(kept) + "\r\n", dropped
