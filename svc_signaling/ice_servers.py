"""ICE servers for a participant: STUN, and TURN with coturn shared-secret credentials.

coturn's `use-auth-secret` scheme (the "TURN REST API"): the username is
`<expiry unix time>:<anything>` and the password is base64(HMAC-SHA1(secret, username)).
coturn checks both with the same `static-auth-secret`, so no per-user state is kept.

TURN relays for a participant of a visit whose join window is open (a verified join
token), never for anyone merely signed in. STUN sends the username in the clear, so its
second half is opaque: an HMAC of the visit, the participant and the expiry under a key
derived from the secret. Nobody on the path learns who calls; an operator holding the
secret can still tell whose a username in coturn's logs was, by computing it again.
The credential expires at the earlier of the configured TTL and the window's end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from google.protobuf.timestamp_pb2 import Timestamp

from svc_signaling.join_tokens import JoinClaims
from svc_signaling.settings import SignalingSettings
from telemesh.signaling.v1 import signaling_pb2

_USERNAME_KEY_LABEL = b"telemesh turn username v1"


def turn_password(secret: str, username: str) -> str:
    """coturn's password for `username`: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def turn_username(secret: str, claims: JoinClaims, expiry: int) -> str:
    """`<expiry>:<opaque id>`: no user or visit id readable on the wire."""
    # A key of its own, so the username never reveals an HMAC made with coturn's secret.
    key = hmac.new(secret.encode(), _USERNAME_KEY_LABEL, hashlib.sha256).digest()
    subject = f"{claims.visit_id}\n{claims.role}\n{claims.subject}\n{expiry}".encode()
    opaque = hmac.new(key, subject, hashlib.sha256).digest()[:16]
    return f"{expiry}:{base64.urlsafe_b64encode(opaque).decode().rstrip('=')}"


def turn_expiry(settings: SignalingSettings, claims: JoinClaims, now: float) -> int | None:
    """When a credential issued now ends (Unix seconds), or None once the window closed."""
    expiry = min(int(now) + settings.turn_ttl_seconds, claims.window_end)
    return expiry if expiry > now else None


def ice_servers_for(
    settings: SignalingSettings, claims: JoinClaims | None, now: float | None = None
) -> list[signaling_pb2.IceServer]:
    """STUN for anyone; TURN too for a visit's participant while its window is open."""
    servers: list[signaling_pb2.IceServer] = []
    if settings.stun_urls:
        servers.append(signaling_pb2.IceServer(urls=list(settings.stun_urls)))
    if claims is None or not (settings.turn_urls and settings.turn_secret):
        return servers
    expiry = turn_expiry(settings, claims, time.time() if now is None else now)
    if expiry is None:
        return servers
    username = turn_username(settings.turn_secret, claims, expiry)
    servers.append(
        signaling_pb2.IceServer(
            urls=list(settings.turn_urls),
            username=username,
            credential=turn_password(settings.turn_secret, username),
            expire_time=Timestamp(seconds=expiry),
        )
    )
    return servers
