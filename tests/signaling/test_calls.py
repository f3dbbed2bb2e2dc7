"""Real calls through the signaling service: two aiortc peers, media flowing.

Every join token comes from the real session service; one call runs at a time and
every peer connection is closed at the end (tests/support/signaling.py).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from telemesh.consent.v1 import consent_pb2
from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from telemesh.signaling.v1.signaling_pb2 import SessionDescription
from telemesh.webrtc.media import SyntheticVideoTrack, count_frames
from telemesh_tools.peer.call_peer import CallPeer
from tests.support.flows import Flows, rid
from tests.support.polling import eventually
from tests.support.signaling import (
    FAST_RECONNECT,
    SignalingStack,
    call,
    connected_call,
    signaling_stub,
)


async def test_two_peers_negotiate_and_receive_video_and_data(
    sig: SignalingStack, flows: Flows, channel: grpc.aio.Channel
) -> None:
    async with call(flows, channel) as c:
        await connected_call(c)
        assert c.patient.frames_received > 0
        assert c.clinician.frames_received > 0
        assert c.patient.messages[-1] == "hello from clinician"
        assert c.clinician.messages[-1] == "hello from patient"
        assert c.patient.polite
        assert not c.clinician.polite
        quality = await c.patient.report_quality()
        assert quality.frames_received > 0

        # Both CONNECTED: the session service records a connected period.
        async def period_open() -> bool:
            visit = await flows.session.GetVisit(
                session_pb2.GetVisitRequest(visit_id=c.visit.visit_id), metadata=c.visit.clinician
            )
            return len(visit.visit.connected_periods) == 1

        await eventually(period_open)


async def test_a_cut_stream_resumes_with_what_it_missed_and_ice_restarts(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    async with call(flows, channel) as c:
        await connected_call(c)
        patient, clinician = c.patient, c.clinician
        last_seen = patient.last_sequence
        await patient.cut_stream()
        await clinician.wait_for(lambda: not clinician.peer_present)

        # While the patient is away the clinician restarts ICE: its offer waits in the
        # patient's buffer.
        await clinician.restart_ice()
        generation = patient.generation

        seen_before = len(patient.events)
        joined = await patient.rejoin()
        assert not joined.resume_gap
        assert patient.events[seen_before].sequence == last_seen, "joined: resuming after"
        await patient.wait_for(lambda: len(patient.events) > seen_before + 1)
        missed = patient.events[seen_before + 1]
        assert missed.sequence == last_seen + 1, "numbering continues after the cut"
        assert missed.WhichOneof("event") == "session_description"

        await patient.wait_for(lambda: patient.generation > generation)
        for peer in (patient, clinician):
            await peer.wait_connected()
            await peer.wait_frames(5, generation=peer.generation)


async def test_glare_is_settled_by_perfect_negotiation(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    async with call(flows, channel, auto_negotiate=False) as c:
        await c.patient.join()
        await c.clinician.join()
        await c.clinician.admit()
        await c.patient.wait_for(lambda: c.patient.admitted and c.patient.peer_present)
        await asyncio.gather(c.patient.negotiate(), c.clinician.negotiate())
        for peer in (c.patient, c.clinician):
            await peer.wait_connected()
            await peer.wait_frames(5)
        assert c.patient.collisions + c.clinician.collisions >= 1, "both offered at once"


async def test_turn_relays_a_call_between_relay_only_peers(
    sig: SignalingStack, flows: Flows, channel: grpc.aio.Channel
) -> None:
    async with call(flows, channel, relay_only=True) as c:
        await connected_call(c)
        turn = next(s for s in c.patient.ice_servers if s.username)
        assert turn.urls == [f"turn:127.0.0.1:{sig.turn_port}?transport=udp"]
        assert c.visit.patient_id not in turn.username  # opaque on the wire
        for peer in (c.patient, c.clinician):
            assert peer.pc is not None
            sdp = peer.pc.localDescription.sdp
            candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
            assert candidates
            assert all(" typ relay " in line for line in candidates)


async def test_signaling_killed_mid_call_both_rejoin_and_connect_again_within_5s(
    sig: SignalingStack, flows: Flows
) -> None:
    # A client that reconnects quickly, as the demo's and apps' channels do.
    channel = grpc.aio.insecure_channel(sig.stack.addresses["signaling"], options=FAST_RECONNECT)
    try:
        async with call(flows, channel) as c:
            await connected_call(c)
            before = {peer: peer.generation for peer in (c.patient, c.clinician)}
            service = sig.stack["signaling"]
            service.kill()
            service.start()
            await asyncio.to_thread(service.wait_ready)

            async def reconnected(peer: CallPeer) -> None:
                await peer.wait_for(lambda: peer.generation > before[peer] and peer.connected)
                await peer.wait_frames(1, generation=peer.generation)

            try:
                await asyncio.wait_for(
                    asyncio.gather(reconnected(c.patient), reconnected(c.clinician)), 5.0
                )
            except TimeoutError:
                raise AssertionError(f"{c.patient.describe()}\n{c.clinician.describe()}") from None
            assert c.patient.joins[-1].resume_gap, "the new process could not replay"

            # The connected period survived the restart: still one, still open. Connection
            # events travel through signaling's outbox (delivered by the new process if the
            # old one died first), so the session service has them soon, not at once.
            async def period_recorded() -> bool:
                reply = await flows.session.GetVisit(
                    session_pb2.GetVisitRequest(visit_id=c.visit.visit_id),
                    metadata=c.visit.clinician,
                )
                return len(reply.visit.connected_periods) > 0

            await eventually(period_recorded, 10.0, 0.2)
            visit = await flows.session.GetVisit(
                session_pb2.GetVisitRequest(visit_id=c.visit.visit_id), metadata=c.visit.clinician
            )
            periods = visit.visit.connected_periods
            assert len(periods) == 1
            assert not periods[0].HasField("end_time")
    finally:
        await channel.close()


async def test_outsiders_early_messages_oversized_sdp_and_floods_are_refused(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with call(flows, channel) as c:
        await connected_call(c)
        room_id = c.patient.room_id
        described = _count(c.clinician, "session_description")
        offer = SessionDescription(type=signaling_pb2.SDP_TYPE_OFFER, sdp="v=0\r\n")

        # A third party with a valid token for another visit.
        other = await flows.ready_visit()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.JoinRoom(
                signaling_pb2.JoinRoomRequest(join_token=c.patient.join_token),
                metadata=other.patient,
            ):
                pass
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(caught.value) == "JOIN_TOKEN_NOT_YOURS"
        async with call(flows, channel, visit=other) as outsider:
            joined = await outsider.patient.join()
            assert joined.room_id != room_id, "their token opens their own room only"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.SendSessionDescription(
                    signaling_pb2.SendSessionDescriptionRequest(
                        request_id=rid(), room_id=room_id, description=offer
                    ),
                    metadata=other.patient,
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason_of(caught.value) == "NOT_A_PARTICIPANT"

            # A patient before admission: nothing is relayed.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.SendSessionDescription(
                    signaling_pb2.SendSessionDescriptionRequest(
                        request_id=rid(), room_id=joined.room_id, description=offer
                    ),
                    metadata=other.patient,
                )
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert reason_of(caught.value) == "NOT_ADMITTED"

        # An oversized SDP.
        huge = SessionDescription(
            type=signaling_pb2.SDP_TYPE_OFFER, sdp="v=0\r\n" + "a=x\r\n" * 20_000
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SendSessionDescription(
                signaling_pb2.SendSessionDescriptionRequest(
                    request_id=rid(), room_id=room_id, description=huge
                ),
                metadata=c.visit.patient,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # A flood from the patient: over the rate, RESOURCE_EXHAUSTED.
        async def report() -> grpc.StatusCode:
            try:
                await stub.ReportCallQuality(
                    signaling_pb2.ReportCallQualityRequest(
                        request_id=rid(), room_id=room_id, quality=signaling_pb2.CallQuality()
                    ),
                    metadata=c.visit.patient,
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(report() for _ in range(150)))
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}

        # The room is unharmed: nothing reached the clinician, media still flows both ways.
        assert _count(c.clinician, "session_description") == described
        for peer in (c.patient, c.clinician):
            await peer.wait_frames(peer.frames_received + 15)
            assert peer.connected


async def test_revoking_telehealth_consent_closes_the_room(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    visit = await flows.book()
    consent = await flows.grant_telehealth(visit)
    await flows.check_in(visit)
    async with call(flows, channel, visit=visit) as c:
        await connected_call(c)
        await flows.consent.RevokeConsent(
            consent_pb2.RevokeConsentRequest(
                request_id=rid(), consent_id=consent.consent_id, expected_version=consent.version
            ),
            metadata=visit.patient,
        )
        for peer in (c.patient, c.clinician):
            await peer.wait_for(lambda peer=peer: bool(peer.closed_reason), 5.0)
            assert peer.closed_reason == signaling_pb2.ROOM_CLOSE_REASON_CONSENT_REVOKED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await signaling_stub(channel).SendSessionDescription(
                signaling_pb2.SendSessionDescriptionRequest(
                    request_id=rid(),
                    room_id=c.patient.room_id,
                    description=SessionDescription(type=signaling_pb2.SDP_TYPE_OFFER, sdp="v=0"),
                ),
                metadata=visit.clinician,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_pre_call_check_echoes_media_and_measures_the_path(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    _, patient = await flows.patient()
    pc = RTCPeerConnection()
    echoed = 0

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        def on_frame() -> None:
            nonlocal echoed
            echoed += 1

        count_frames(track, on_frame)

    try:
        pc.addTrack(SyntheticVideoTrack())
        await pc.setLocalDescription(await pc.createOffer())
        started = await stub.StartPreCallCheck(
            signaling_pb2.StartPreCallCheckRequest(
                request_id=rid(),
                offer=SessionDescription(
                    type=signaling_pb2.SDP_TYPE_OFFER, sdp=pc.localDescription.sdp
                ),
            ),
            metadata=patient,
        )
        await pc.setRemoteDescription(RTCSessionDescription(started.answer.sdp, "answer"))

        async def done() -> bool:
            reply = await stub.GetPreCallCheck(
                signaling_pb2.GetPreCallCheckRequest(check_id=started.check_id), metadata=patient
            )
            return reply.state != signaling_pb2.PRE_CALL_CHECK_STATE_RUNNING

        await eventually(done, 15.0, 0.2)
        result = await stub.GetPreCallCheck(
            signaling_pb2.GetPreCallCheckRequest(check_id=started.check_id), metadata=patient
        )
        assert result.state == signaling_pb2.PRE_CALL_CHECK_STATE_SUCCEEDED
        assert result.frames_received > 0
        # The measurement window (TELEMESH_SIGNALING_PRECALL_SECONDS, 4 s by default)
        # holds several RTCP rounds (one every 0.5 to 1.5 s): our receiver reports on
        # the echoed video give the echo peer a round-trip time.
        assert result.round_trip_time_ms > 0.0
        assert echoed > 0, "the echo peer sent our video back"

        # Only its owner reads it.
        _, someone_else = await flows.patient()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetPreCallCheck(
                signaling_pb2.GetPreCallCheckRequest(check_id=started.check_id),
                metadata=someone_else,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await pc.close()


def _count(peer: CallPeer, kind: str) -> int:
    return sum(1 for event in peer.events if event.WhichOneof("event") == kind)


async def test_a_peer_renews_a_join_token_that_no_longer_verifies(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    visit = await flows.ready_visit()

    async def renew() -> str:
        return await flows.join_token(visit, "patient")

    stale = "e30.e30.c2ln"  # stands in for an expired token
    peer = CallPeer(signaling_stub(channel), visit.patient, stale, renew_token=renew)
    try:
        joined = await peer.join()
        assert joined.role == signaling_pb2.PARTICIPANT_ROLE_PATIENT
        assert peer.join_token != stale
    finally:
        await peer.close()
