"""ICE configuration for aiortc peers: servers from the signaling service, and the
loopback override.

aioice gathers host candidates from the machine's interfaces but skips 127.0.0.1, so
on a machine whose only interface is loopback an aiortc peer gathers none and every
call times out. With TELEMESH_ICE_LOOPBACK=1 the peers of this process gather exactly
one host candidate, 127.0.0.1 (aioice's `get_host_addresses` replaced). It is for
machines where both ends of a call run locally (tests, the demo); never in production.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from telemesh.config import load, setting
from telemesh.signaling.v1 import signaling_pb2

_original_host_addresses = aioice.ice.get_host_addresses


@dataclass(frozen=True)
class PeerSettings:
    ice_loopback: bool = setting(
        "TELEMESH_ICE_LOOPBACK",
        False,
        "aiortc peers in this process gather only a 127.0.0.1 host candidate (local use).",
    )


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


def enable_loopback_ice(enabled: bool = True) -> None:
    """Makes aiortc peers in this process gather only 127.0.0.1 (or undoes it)."""
    aioice.ice.get_host_addresses = _loopback_only if enabled else _original_host_addresses


def apply_ice_settings() -> None:
    """Applies TELEMESH_ICE_LOOPBACK; call before creating peer connections."""
    if load(PeerSettings).ice_loopback:
        enable_loopback_ice()


def rtc_configuration(
    servers: Iterable[signaling_pb2.IceServer], relay_only: bool = False
) -> RTCConfiguration:
    """An RTCConfiguration from the service's ICE servers."""
    ice_servers = [
        RTCIceServer(
            urls=list(server.urls),
            username=server.username or None,
            credential=server.credential or None,
        )
        for server in servers
    ]
    return RTCConfiguration(
        iceServers=ice_servers,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


def candidate_from_proto(candidate: signaling_pb2.IceCandidate) -> RTCIceCandidate | None:
    """A remote candidate for addIceCandidate; None marks the end of candidates."""
    if not candidate.candidate:
        return None
    parsed = candidate_from_sdp(candidate.candidate.removeprefix("candidate:"))
    parsed.sdpMid = candidate.sdp_mid or None
    parsed.sdpMLineIndex = candidate.sdp_mline_index
    return parsed
