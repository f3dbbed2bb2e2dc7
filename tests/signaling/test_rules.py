"""Who may call what, bad input, idempotency, resume, keepalives and durable room state:
the generated client against real processes (no media), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from telemesh.consent.v1 import consent_pb2
from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from telemesh.signaling.v1.signaling_pb2 import SessionDescription
from tests.support.flows import CONSENT_TEXT, Flows, Metadata, Visit, rid
from tests.support.polling import eventually
from tests.support.signaling import (
    TURN_SECRET,
    SignalingStack,
    signaling_stack,
    signaling_stub,
)

S = signaling_pb2
OFFER = SessionDescription(type=S.SDP_TYPE_OFFER, sdp="v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def sig(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SignalingStack]:
    with signaling_stack(
        tmp_path_factory.mktemp("home"),
        request.param,
        TELEMESH_SIGNALING_KEEPALIVE_SECONDS="0.5",
        TELEMESH_SIGNALING_REPLAY_BUFFER="8",
    ) as stack:
        yield stack


class RoomStream:
    """A JoinRoom stream read in the background, as a client app would."""

    def __init__(self, stub: object, token: str, metadata: Metadata, resume_after: int = 0):
        self.call = stub.JoinRoom(  # type: ignore[attr-defined]
            S.JoinRoomRequest(join_token=token, resume_after_sequence=resume_after),
            metadata=metadata,
        )
        self.events: list[S.JoinRoomResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.call:
                self.events.append(event)
        except grpc.aio.AioRpcError as error:
            self.error = error

    def of(self, kind: str) -> list[S.JoinRoomResponse]:
        return [e for e in self.events if e.WhichOneof("event") == kind]

    async def wait(self, kind: str, count: int = 1) -> S.JoinRoomResponse:
        async def seen() -> bool:
            if self.error is not None:
                raise AssertionError(f"stream failed: {self.error.code()}")
            return len(self.of(kind)) >= count

        await eventually(seen, 10.0, 0.02)
        return self.of(kind)[count - 1]

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def room(
    flows: Flows, channel: grpc.aio.Channel, visit: Visit | None = None
) -> AsyncIterator[tuple[Visit, RoomStream, RoomStream, str]]:
    """A ready visit whose patient and clinician both joined (not admitted)."""
    visit = visit or await flows.ready_visit()
    stub = signaling_stub(channel)
    patient = RoomStream(stub, await flows.join_token(visit, "patient"), visit.patient)
    clinician = RoomStream(stub, await flows.join_token(visit, "clinician"), visit.clinician)
    try:
        joined = await patient.wait("joined")
        await clinician.wait("joined")
        yield visit, patient, clinician, joined.joined.room_id
    finally:
        await patient.close()
        await clinician.close()


@pytest.fixture
async def flows(sig: SignalingStack) -> AsyncIterator[Flows]:
    flows = Flows(sig.stack)
    yield flows
    await flows.close()


@pytest.fixture
async def channel(sig: SignalingStack) -> AsyncIterator[grpc.aio.Channel]:
    channel = sig.stack.channel("signaling")
    yield channel
    await channel.close()


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# --- JoinRoom -------------------------------------------------------------------------


async def test_join_needs_a_participant_with_their_own_valid_token(
    sig: SignalingStack, flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    visit = await flows.ready_visit()
    patient_token = await flows.join_token(visit, "patient")

    async def join(token: str, metadata: Metadata) -> grpc.aio.AioRpcError:
        stream = RoomStream(stub, token, metadata)
        await stream.task
        assert stream.error is not None, "the join was refused"
        return stream.error

    billing = sig.stack.tokens.role("billing", "b-1")
    error = await join(patient_token, billing)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await join(patient_token, visit.clinician)  # the other participant's token
    assert reason_of(error) == "JOIN_TOKEN_NOT_YOURS"
    error = await join("e30.e30.c2ln", visit.patient)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(error) == "INVALID_JOIN_TOKEN"
    error = await join("", visit.patient)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_stream_resumes_after_its_last_sequence_and_reports_a_gap_past_the_buffer(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with room(flows, channel) as (visit, patient, _clinician, room_id):
        await stub.AdmitPatient(
            S.AdmitPatientRequest(request_id=rid(), room_id=room_id), metadata=visit.clinician
        )
        await patient.wait("admitted")
        token = await flows.join_token(visit, "patient")
        await patient.close()
        last = max(e.sequence for e in patient.events)

        async def send(n: int) -> None:
            for _ in range(n):
                await stub.SendIceCandidates(
                    S.SendIceCandidatesRequest(
                        request_id=rid(), room_id=room_id, candidates=[S.IceCandidate()]
                    ),
                    metadata=visit.clinician,
                )

        await send(3)
        resumed = RoomStream(stub, token, visit.patient, resume_after=last)
        try:
            joined = await resumed.wait("joined")
            assert not joined.joined.resume_gap
            assert joined.sequence == last
            await resumed.wait("ice_candidates", 3)
            numbers = [e.sequence for e in resumed.of("ice_candidates")]
            assert numbers == [last + 1, last + 2, last + 3]
            await resumed.wait("keepalive")  # the room is quiet: keepalives flow
            assert resumed.of("keepalive")[0].sequence == last + 3
        finally:
            await resumed.close()

        await send(10)  # more than the buffer of 8 while away
        gap = RoomStream(stub, token, visit.patient, resume_after=last + 3)
        try:
            joined = await gap.wait("joined")
            assert joined.joined.resume_gap
            await gap.wait("ice_candidates", 8)
        finally:
            await gap.close()


async def test_room_state_survives_a_restart_of_the_service(
    sig: SignalingStack, flows: Flows
) -> None:
    channel = sig.stack.channel("signaling")
    try:
        stub = signaling_stub(channel)
        async with room(flows, channel) as (visit, patient, _clinician, room_id):
            await stub.AdmitPatient(
                S.AdmitPatientRequest(request_id=rid(), room_id=room_id), metadata=visit.clinician
            )
            await patient.wait("admitted")
            token = await flows.join_token(visit, "patient")
        sig.stack["signaling"].restart()
    finally:
        await channel.close()
    channel = sig.stack.channel("signaling")
    try:
        rejoined = RoomStream(signaling_stub(channel), token, visit.patient, resume_after=5)
        try:
            joined = await rejoined.wait("joined")
            assert joined.joined.room_id == room_id
            assert joined.joined.admitted, "admission is durable"
            assert joined.joined.resume_gap, "events are not"
        finally:
            await rejoined.close()
    finally:
        await channel.close()


# --- relayed messages -----------------------------------------------------------------


CANDIDATES = [S.IceCandidate(candidate="candidate:1 1 udp 1 192.0.2.1 9 typ host")]


@contextlib.asynccontextmanager
async def admitted_room(
    flows: Flows, channel: grpc.aio.Channel
) -> AsyncIterator[tuple[Visit, RoomStream, RoomStream, str]]:
    """A room both participants joined, the patient admitted and told so (every event
    logged for the patient so far has arrived)."""
    async with room(flows, channel) as (visit, patient, clinician, room_id):
        await signaling_stub(channel).AdmitPatient(
            S.AdmitPatientRequest(request_id=rid(), room_id=room_id), metadata=visit.clinician
        )
        await patient.wait("admitted")
        yield visit, patient, clinician, room_id


def description(room_id: str) -> S.SendSessionDescriptionRequest:
    return S.SendSessionDescriptionRequest(request_id=rid(), room_id=room_id, description=OFFER)


def candidates(room_id: str) -> S.SendIceCandidatesRequest:
    return S.SendIceCandidatesRequest(request_id=rid(), room_id=room_id, candidates=CANDIDATES)


async def test_nothing_is_relayed_before_the_patient_is_admitted(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with room(flows, channel) as (visit, _patient, clinician, room_id):
        error = await refused(
            stub.SendSessionDescription(description(room_id), metadata=visit.patient)
        )
        assert reason_of(error) == "NOT_ADMITTED"
        # Once admitted, the patient's next message is the first the clinician gets.
        await stub.AdmitPatient(
            S.AdmitPatientRequest(request_id=rid(), room_id=room_id), metadata=visit.clinician
        )
        await stub.SendIceCandidates(candidates(room_id), metadata=visit.patient)
        await clinician.wait("ice_candidates")
        assert not clinician.of("session_description"), "the refused offer was not relayed"


async def test_an_admitted_patients_description_reaches_the_clinician(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with admitted_room(flows, channel) as (visit, _patient, clinician, room_id):
        await stub.SendSessionDescription(description(room_id), metadata=visit.patient)
        event = await clinician.wait("session_description")
        assert event.session_description.from_role == S.PARTICIPANT_ROLE_PATIENT
        assert event.session_description.description == OFFER


async def test_the_clinicians_candidates_reach_the_patient(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with admitted_room(flows, channel) as (visit, patient, _clinician, room_id):
        await stub.SendIceCandidates(candidates(room_id), metadata=visit.clinician)
        event = await patient.wait("ice_candidates")
        assert event.ice_candidates.from_role == S.PARTICIPANT_ROLE_CLINICIAN
        assert list(event.ice_candidates.candidates) == CANDIDATES


async def test_a_relayed_message_does_not_come_back_to_its_sender(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with admitted_room(flows, channel) as (visit, patient, clinician, room_id):
        seen = max(event.sequence for event in patient.events)
        await stub.SendSessionDescription(description(room_id), metadata=visit.patient)
        await clinician.wait("session_description")
        # The clinician's answer comes after any echo of the offer would have: the
        # patient's log numbers each event one more than the last.
        await stub.SendIceCandidates(candidates(room_id), metadata=visit.clinician)
        answer = await patient.wait("ice_candidates")
        assert not patient.of("session_description"), "nothing echoes back to the sender"
        assert answer.sequence == seen + 1, "no other event came in between"


async def test_a_retried_send_is_relayed_once(flows: Flows, channel: grpc.aio.Channel) -> None:
    stub = signaling_stub(channel)
    async with admitted_room(flows, channel) as (visit, _patient, clinician, room_id):
        send = description(room_id)
        await stub.SendSessionDescription(send, metadata=visit.patient)
        await stub.SendSessionDescription(send, metadata=visit.patient)  # a retry
        first = await clinician.wait("session_description")
        # The patient's next message comes after the retry would have.
        await stub.SendIceCandidates(candidates(room_id), metadata=visit.patient)
        later = await clinician.wait("ice_candidates")
        assert len(clinician.of("session_description")) == 1, "the retry was not relayed"
        assert later.sequence == first.sequence + 1, "nothing came in between"


async def test_a_request_id_reused_for_another_description_is_invalid_argument(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with admitted_room(flows, channel) as (visit, _patient, _clinician, room_id):
        send = description(room_id)
        await stub.SendSessionDescription(send, metadata=visit.patient)
        reused = S.SendSessionDescriptionRequest(
            request_id=send.request_id,
            room_id=room_id,
            description=SessionDescription(type=S.SDP_TYPE_ANSWER, sdp="v=0"),
        )
        error = await refused(stub.SendSessionDescription(reused, metadata=visit.patient))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("outsider", ["other-patient", "other-clinician", "billing"])
async def test_nobody_outside_the_visit_relays_into_its_room(
    sig: SignalingStack, flows: Flows, channel: grpc.aio.Channel, outsider: str
) -> None:
    stub = signaling_stub(channel)
    async with admitted_room(flows, channel) as (_visit, _patient, _clinician, room_id):
        other = await flows.ready_visit()
        metadata = {
            "other-patient": other.patient,
            "other-clinician": other.clinician,
            "billing": sig.stack.tokens.role("billing", "b"),
        }[outsider]
        error = await refused(stub.SendSessionDescription(description(room_id), metadata=metadata))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_relaying_into_an_unknown_room_is_not_found(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with room(flows, channel) as (visit, _patient, _clinician, _room_id):
        unknown = S.SendIceCandidatesRequest(
            request_id=rid(), room_id="no-such-room", candidates=[S.IceCandidate()]
        )
        error = await refused(stub.SendIceCandidates(unknown, metadata=visit.patient))
        assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_messages_are_invalid_argument_with_every_field_named(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with room(flows, channel) as (visit, _patient, _clinician, room_id):
        error = await refused(
            stub.SendSessionDescription(
                S.SendSessionDescriptionRequest(
                    request_id="not-a-uuid",
                    room_id=room_id,
                    description=SessionDescription(type=S.SdpType.ValueType(99), sdp="v=0"),
                ),
                metadata=visit.patient,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "request_id" in (error.details() or "")
        assert "description.type" in (error.details() or "")
        error = await refused(
            stub.SendIceCandidates(
                S.SendIceCandidatesRequest(
                    request_id=rid(),
                    room_id=room_id,
                    candidates=[S.IceCandidate(candidate="x" * 600)] + [S.IceCandidate()] * 60,
                ),
                metadata=visit.patient,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        error = await refused(
            stub.ReportCallQuality(
                S.ReportCallQualityRequest(
                    request_id=rid(), room_id=room_id, quality=S.CallQuality(fraction_lost=2.0)
                ),
                metadata=visit.patient,
            )
        )
        assert "quality.fraction_lost" in (error.details() or "")
        error = await refused(
            stub.ReportConnectionState(
                S.ReportConnectionStateRequest(request_id=rid(), room_id=room_id),
                metadata=visit.patient,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- admission, recording, connection ---------------------------------------------------


async def test_only_the_visits_clinician_admits_and_sets_recording_with_consent(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with room(flows, channel) as (visit, patient, clinician, room_id):
        admit = S.AdmitPatientRequest(request_id=rid(), room_id=room_id)
        error = await refused(stub.AdmitPatient(admit, metadata=visit.patient))
        assert reason_of(error) == "CLINICIAN_ONLY"
        other = await flows.ready_visit()
        error = await refused(stub.AdmitPatient(admit, metadata=other.clinician))
        assert reason_of(error) == "NOT_A_PARTICIPANT"
        await stub.AdmitPatient(admit, metadata=visit.clinician)
        await stub.AdmitPatient(admit, metadata=visit.clinician)  # a retry
        await patient.wait("admitted")
        await clinician.wait("admitted")
        state = await flows.session.GetVisit(
            session_pb2.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.clinician
        )
        assert state.visit.state == session_pb2.VISIT_STATE_IN_PROGRESS
        assert state.visit.transitions[-1].actor_id == visit.clinician_id

        record_on = S.SetRecordingRequest(request_id=rid(), room_id=room_id, recording=True)
        error = await refused(stub.SetRecording(record_on, metadata=visit.patient))
        assert reason_of(error) == "CLINICIAN_ONLY"
        error = await refused(stub.SetRecording(record_on, metadata=visit.clinician))
        assert reason_of(error) == "RECORDING_CONSENT_REQUIRED"

        granted = await flows.consent.GrantConsent(
            consent_pb2.GrantConsentRequest(
                request_id=rid(),
                patient_id=visit.patient_id,
                category=consent_pb2.CONSENT_CATEGORY_RECORDING,
                text_version="2026-01",
                text_sha256=hashlib.sha256(CONSENT_TEXT).hexdigest(),
                capture_method=consent_pb2.CAPTURE_METHOD_IN_APP,
            ),
            metadata=visit.patient,
        )

        async def recording_on() -> bool:
            # The grant reaches signaling's consent view within about a second.
            on = S.SetRecordingRequest(request_id=rid(), room_id=room_id, recording=True)
            try:
                return (await stub.SetRecording(on, metadata=visit.clinician)).recording
            except grpc.aio.AioRpcError as error:
                if reason_of(error) != "RECORDING_CONSENT_REQUIRED":
                    raise
                return False

        await eventually(recording_on, 5.0, 0.2)
        event = await patient.wait("recording_changed")
        assert event.recording_changed.recording

        # Revoking recording consent turns recording off at once.
        await flows.consent.RevokeConsent(
            consent_pb2.RevokeConsentRequest(
                request_id=rid(),
                consent_id=granted.consent.consent_id,
                expected_version=granted.consent.version,
            ),
            metadata=visit.patient,
        )
        event = await patient.wait("recording_changed", 2)
        assert not event.recording_changed.recording


async def test_connected_time_follows_both_participants_reports(
    flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    async with room(flows, channel) as (visit, _patient, _clinician, room_id):
        await stub.AdmitPatient(
            S.AdmitPatientRequest(request_id=rid(), room_id=room_id), metadata=visit.clinician
        )

        async def report(metadata: Metadata, state: S.ConnectionState.ValueType) -> None:
            await stub.ReportConnectionState(
                S.ReportConnectionStateRequest(request_id=rid(), room_id=room_id, state=state),
                metadata=metadata,
            )

        async def periods() -> list[session_pb2.ConnectedPeriod]:
            reply = await flows.session.GetVisit(
                session_pb2.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.clinician
            )
            return list(reply.visit.connected_periods)

        await report(visit.patient, S.CONNECTION_STATE_CONNECTED)
        await asyncio.sleep(0.3)
        assert await periods() == [], "one side alone is not a call"
        await report(visit.clinician, S.CONNECTION_STATE_CONNECTED)

        async def opened() -> bool:
            found = await periods()
            return len(found) == 1 and not found[0].HasField("end_time")

        await eventually(opened)
        await stub.LeaveRoom(
            S.LeaveRoomRequest(request_id=rid(), room_id=room_id), metadata=visit.patient
        )

        async def closed() -> bool:
            found = await periods()
            return len(found) == 1 and found[0].HasField("end_time")

        await eventually(closed)
        await _clinician.wait("peer_left")


# --- ICE servers and pre-call checks ----------------------------------------------------


async def test_ice_servers_carry_coturn_shared_secret_credentials(
    sig: SignalingStack, flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    visit = await flows.ready_visit()
    token = await flows.join_token(visit, "patient")
    reply = await stub.GetIceServers(
        S.GetIceServersRequest(join_token=token), metadata=visit.patient
    )
    stun, turn = reply.ice_servers
    assert stun.urls == [f"stun:127.0.0.1:{sig.turn_port}"]
    expiry, _, opaque = turn.username.partition(":")
    assert opaque
    assert visit.patient_id not in turn.username
    assert int(expiry) == turn.expire_time.seconds
    expected = hmac.new(TURN_SECRET.encode(), turn.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(turn.credential) == expected
    # Without a join token: STUN only (tests/security covers the refusals).
    reply = await stub.GetIceServers(S.GetIceServersRequest(), metadata=visit.patient)
    assert [server.urls for server in reply.ice_servers] == [stun.urls]
    error = await refused(
        stub.GetIceServers(S.GetIceServersRequest(), metadata=sig.stack.tokens.role("billing", "b"))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_pre_call_checks_refuse_bad_offers_outsiders_and_unknown_ids(
    sig: SignalingStack, flows: Flows, channel: grpc.aio.Channel
) -> None:
    stub = signaling_stub(channel)
    _, patient = await flows.patient()
    answer = SessionDescription(type=S.SDP_TYPE_ANSWER, sdp="v=0")
    error = await refused(
        stub.StartPreCallCheck(
            S.StartPreCallCheckRequest(request_id=rid(), offer=answer), metadata=patient
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await refused(
        stub.StartPreCallCheck(
            S.StartPreCallCheckRequest(request_id=rid(), offer=OFFER),
            metadata=sig.stack.tokens.role("billing", "b"),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        stub.GetPreCallCheck(S.GetPreCallCheckRequest(check_id="nope"), metadata=patient)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("ending", "reason"),
    [
        ("complete", S.ROOM_CLOSE_REASON_VISIT_ENDED),
        ("cancel", S.ROOM_CLOSE_REASON_VISIT_CANCELLED),
    ],
)
async def test_the_room_closes_when_the_visit_is_over(
    flows: Flows, channel: grpc.aio.Channel, ending: str, reason: int
) -> None:
    stub = signaling_stub(channel)
    async with room(flows, channel) as (visit, patient, clinician, room_id):
        if ending == "complete":
            await stub.AdmitPatient(
                S.AdmitPatientRequest(request_id=rid(), room_id=room_id), metadata=visit.clinician
            )
            await flows.complete(visit)
        else:
            await flows.session.CancelVisit(
                session_pb2.CancelVisitRequest(
                    request_id=rid(),
                    visit_id=visit.visit_id,
                    reason=session_pb2.CANCEL_REASON_PATIENT_REQUEST,
                ),
                metadata=visit.patient,
            )
        # The session service's outbox brings the close to signaling.
        for stream in (patient, clinician):
            closed = await stream.wait("room_closed")
            assert closed.room_closed.reason == reason
        error = await refused(
            stub.SendSessionDescription(
                S.SendSessionDescriptionRequest(
                    request_id=rid(), room_id=room_id, description=OFFER
                ),
                metadata=visit.clinician,
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Only the session service may close a room.
    error = await refused(
        stub.CloseRoom(
            S.CloseRoomRequest(
                request_id=rid(), visit_id=visit.visit_id, reason=S.ROOM_CLOSE_REASON_VISIT_ENDED
            ),
            metadata=visit.clinician,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
