"""Join tokens: for participants, inside the join window, only with telehealth consent;
consent unreachable means no token (fail closed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import jwt
import pytest

from telemesh.consent.v1 import consent_pb2
from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2
from tests.support.flows import Flows, rid, ts
from tests.support.harness import Stack

P = session_pb2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("home"), "sqlite")
    try:
        stack.start("consent", "session")
        yield stack
    finally:
        stack.close()


@pytest.fixture
async def flows(stack: Stack) -> AsyncIterator[Flows]:
    flows = Flows(stack)
    yield flows
    await flows.close()


async def _keys(flows: Flows, md: tuple[tuple[str, str], ...]) -> dict[str, jwt.PyJWK]:
    reply = await flows.session.GetJoinTokenKeys(P.GetJoinTokenKeysRequest(), metadata=md)
    return {key["kid"]: jwt.PyJWK(key) for key in json.loads(reply.jwks_json)["keys"]}


async def test_both_participants_get_a_token_the_published_keys_verify(flows: Flows) -> None:
    visit = await flows.ready_visit()
    keys = await _keys(flows, flows.tokens.service("signaling"))
    for role, md in (("patient", visit.patient), ("clinician", visit.clinician)):
        reply = await flows.session.IssueJoinToken(
            P.IssueJoinTokenRequest(visit_id=visit.visit_id), metadata=md
        )
        header = jwt.get_unverified_header(reply.join_token)
        claims = jwt.decode(
            reply.join_token,
            keys[header["kid"]].key,
            algorithms=["ES256"],
            audience="telemesh-signaling",
            issuer="telemesh-session",
        )
        assert claims["visit_id"] == visit.visit_id
        assert claims["role"] == role
        assert claims["sub"] == (visit.patient_id if role == "patient" else visit.clinician_id)
        assert claims["traceparent"] == visit.traceparent, "signaling joins the visit's trace"
        assert claims["exp"] - claims["iat"] <= 600


async def test_no_consent_no_token(flows: Flows) -> None:
    visit = await flows.book()
    await flows.check_in(visit)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.join_token(visit, "clinician")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "CONSENT_REQUIRED"


async def test_the_patient_comes_in_through_the_waiting_room(flows: Flows) -> None:
    visit = await flows.book()
    await flows.grant_telehealth(visit)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.join_token(visit, "patient")
    assert reason_of(caught.value) == "NOT_CHECKED_IN"
    assert await flows.join_token(visit, "clinician"), "the clinician may open the room early"


async def test_outside_the_join_window_no_token(flows: Flows) -> None:
    clinician_id, clinician_md = await flows.clinician()
    patient_id, patient_md = await flows.patient()
    later = await flows.next_slot(clinician_id, patient_md, skip=24 * 12)  # a day ahead
    reply = await flows.session.BookVisit(
        P.BookVisitRequest(
            request_id=rid(), clinician_id=clinician_id, patient_id=patient_id, start_time=ts(later)
        ),
        metadata=patient_md,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.IssueJoinToken(
            P.IssueJoinTokenRequest(visit_id=reply.visit.visit_id), metadata=clinician_md
        )
    assert reason_of(caught.value) == "OUTSIDE_JOIN_WINDOW"


async def test_a_revocation_stops_new_tokens_within_a_second(flows: Flows) -> None:
    visit = await flows.ready_visit()
    assert await flows.join_token(visit, "patient")
    listed = await flows.consent.ListConsents(
        consent_pb2.ListConsentsRequest(patient_id=visit.patient_id), metadata=visit.patient
    )
    consent = listed.consents[0]
    await flows.consent.RevokeConsent(
        consent_pb2.RevokeConsentRequest(
            request_id=rid(), consent_id=consent.consent_id, expected_version=consent.version
        ),
        metadata=visit.patient,
    )
    await asyncio.sleep(1.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.join_token(visit, "patient")
    assert reason_of(caught.value) == "CONSENT_REQUIRED"


async def test_consent_unreachable_means_no_token(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack("sqlite", "consent", "session")
    flows = Flows(stack)
    try:
        visit = await flows.ready_visit()
        stack["consent"].kill()
        await asyncio.sleep(1.0)  # past the watcher's trust window
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await flows.join_token(visit, "patient")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await flows.close()
