"""A reusable aiortc call peer that connects through the signaling service.

Used by the tests, the demo and the tracing tests: `CallPeer` joins a visit's room with
the generated signaling client, negotiates with perfect negotiation, sends a synthetic
video track and a data channel, counts what it receives and reports connection state
and call quality. `ice.apply_ice_settings()` switches on the loopback host-candidate
override (TELEMESH_ICE_LOOPBACK=1) for machines whose only interface is loopback.

Import from the modules (`telemesh_tools.peer.call_peer`, ...): this package imports nothing,
so that a process using only `telemesh.webrtc.stats` does not load aiortc.
"""
