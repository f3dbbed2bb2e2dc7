"""A long server stream through the edge (a patient's JoinRoom over gRPC-web, opened by
the Node client when the stack came up: see conftest.py) outlives proxies' timeouts.

The stream must be a minute old before it is checked. It was opened with the package's
mesh, so this test waits only for what the other mesh tests have not already spent: in
pytest's own order (by file name) they spend it all; run first or alone, it waits out
the minute and passes the same.
"""

from __future__ import annotations

import time

import pytest

from tests.mesh.long_stream import OpenStream
from tests.support import grpcweb
from tests.support.mesh import MeshUnderTest


def test_a_stream_through_the_edge_stays_open_past_60_seconds(
    mesh: MeshUnderTest, long_stream: OpenStream | None
) -> None:
    """A patient's JoinRoom, opened over gRPC-web when the stack came up: still open a
    minute later, and it delivers the clinician joining. Envoy's default route timeout
    (15 s) would have cut it."""
    if long_stream is None:
        pytest.skip(grpcweb.node_missing() or "no Node client")
    remaining = 62 - (time.monotonic() - long_stream.opened_at)
    if remaining > 0:
        time.sleep(remaining)
    events = long_stream.events()
    assert long_stream.process.running, f"the stream ended: {events[-3:]}"
    assert events, "the stream never answered"
    assert all("message" in event for event in events), events[-3:]
    poked_at = time.time() * 1000
    long_stream.spec.poke(mesh)
    deadline = time.monotonic() + 15
    while not any(
        event["at"] >= poked_at and long_stream.spec.answers_poke(event["message"])
        for event in long_stream.events()
    ):
        assert time.monotonic() < deadline, f"nothing arrived: {long_stream.events()[-3:]}"
        time.sleep(0.2)
    assert long_stream.process.running
