"""ICE servers for a participant: STUN, and TURN with coturn shared-secret credentials.

coturn's `use-auth-secret` scheme (the "TURN REST API"): the username is
`<expiry unix time>:<user id>` and the password is base64(HMAC-SHA1(secret, username)).
coturn checks both with the same `static-auth-secret`, so no per-user state is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from google.protobuf.timestamp_pb2 import Timestamp

from svc_signaling.settings import SignalingSettings
from telemesh.signaling.v1 import signaling_pb2


def turn_credential(
    secret: str, user_id: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, str, int]:
    """(username, credential, expiry) for `user_id`, valid `ttl_seconds` from now."""
    expiry = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode(), expiry


def ice_servers_for(settings: SignalingSettings, user_id: str) -> list[signaling_pb2.IceServer]:
    servers: list[signaling_pb2.IceServer] = []
    if settings.stun_urls:
        servers.append(signaling_pb2.IceServer(urls=list(settings.stun_urls)))
    if settings.turn_urls and settings.turn_secret:
        username, credential, expiry = turn_credential(
            settings.turn_secret, user_id, settings.turn_ttl_seconds
        )
        servers.append(
            signaling_pb2.IceServer(
                urls=list(settings.turn_urls),
                username=username,
                credential=credential,
                expire_time=Timestamp(seconds=expiry),
            )
        )
    return servers
