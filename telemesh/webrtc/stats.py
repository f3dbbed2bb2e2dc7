"""Call quality from an aiortc stats report, in the signaling contract's units."""

from __future__ import annotations

from typing import Any

from telemesh.signaling.v1 import signaling_pb2

# RTP clock rates: aiortc reports jitter in clock units, not seconds.
_CLOCK_RATE = {"video": 90_000, "audio": 48_000}


def quality_from_stats(report: Any, frames_received: int) -> signaling_pb2.CallQuality:
    quality = signaling_pb2.CallQuality(frames_received=frames_received)
    received = lost = 0
    for stats in report.values():
        kind = getattr(stats, "kind", "video")
        if stats.type == "remote-inbound-rtp" and stats.roundTripTime is not None:
            quality.round_trip_time_ms = max(quality.round_trip_time_ms, stats.roundTripTime * 1000)
        elif stats.type == "inbound-rtp":
            received += stats.packetsReceived or 0
            lost += max(0, stats.packetsLost or 0)
            if stats.jitter is not None:
                jitter_ms = stats.jitter / _CLOCK_RATE.get(kind, 90_000) * 1000
                quality.jitter_ms = max(quality.jitter_ms, jitter_ms)
            if kind == "audio":
                quality.audio_packets_received += stats.packetsReceived or 0
    if received + lost:
        quality.fraction_lost = lost / (received + lost)
    return quality
