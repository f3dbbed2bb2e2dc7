"""Issue 12, finding 7: TURN credentials only for a visit's participant, opaque, and no
longer-lived than the visit's join window.

Real session, consent and signaling processes and a real coturn (tests/signaling's
stack). Tokens the session service could have signed but whose visit or window the
test chooses are signed with the session service's own key, read from its home.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import jwt
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from svc_signaling.ice_servers import turn_password
from telemesh.errors import reason_of
from telemesh.identity.signing_keys import SigningKey
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from tests.support.flows import Flows, Metadata, Visit
from tests.support.signaling import TURN_SECRET, SignalingStack, signaling_stack

S = signaling_pb2
TTL = 600  # TELEMESH_SIGNALING_TURN_TTL_SECONDS of tests/signaling's stack
OPAQUE = re.compile(r"^(\d+):([A-Za-z0-9_-]{22})$")


@pytest.fixture(scope="module")
def sig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignalingStack]:
    with signaling_stack(tmp_path_factory.mktemp("home")) as stack:
        yield stack


@pytest.fixture
async def flows(sig: SignalingStack) -> AsyncIterator[Flows]:
    flows = Flows(sig.stack)
    yield flows
    await flows.close()


@pytest.fixture
async def stub(sig: SignalingStack) -> AsyncIterator[signaling_pb2_grpc.SignalingServiceAsyncStub]:
    channel = sig.stack.channel("signaling")
    yield signaling_pb2_grpc.SignalingServiceStub(channel)
    await channel.close()


def session_signed(sig: SignalingStack, visit: Visit, role: str, **overrides: Any) -> str:
    """A join token as the session service signs them (its own key), with `overrides`."""
    key = SigningKey.load_or_create(sig.home / "session" / "join-token-key")
    claims: dict[str, Any] = {
        "iss": "telemesh-session",
        "aud": "telemesh-signaling",
        "sub": visit.patient_id if role == "patient" else visit.clinician_id,
        "role": role,
        "visit_id": visit.visit_id,
        "patient_id": visit.patient_id,
        "clinician_id": visit.clinician_id,
        "traceparent": visit.traceparent,
        "window_end": int(time.time()) + 3600,
        "jti": str(uuid.uuid4()),
        **overrides,
    }
    return key.sign(claims, 600)


async def turn_of(
    stub: signaling_pb2_grpc.SignalingServiceAsyncStub, token: str, who: Metadata
) -> S.IceServer:
    reply = await stub.GetIceServers(S.GetIceServersRequest(join_token=token), metadata=who)
    turns = [server for server in reply.ice_servers if server.username]
    assert len(turns) == 1, reply
    return turns[0]


async def refused(
    stub: signaling_pb2_grpc.SignalingServiceAsyncStub, token: str, who: Metadata
) -> tuple[grpc.StatusCode, str | None]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetIceServers(S.GetIceServersRequest(join_token=token), metadata=who)
    return caught.value.code(), reason_of(caught.value)


async def test_turn_is_only_for_the_callers_own_token_of_an_open_window(
    sig: SignalingStack, flows: Flows, stub: signaling_pb2_grpc.SignalingServiceAsyncStub
) -> None:
    visit = await flows.ready_visit()
    other = await flows.ready_visit()  # another patient's visit with the same clinician
    own = await flows.join_token(visit, "patient")
    assert (await turn_of(stub, own, visit.patient)).credential, "the participant gets TURN"

    # Signed in but no token: STUN only, no relay credentials.
    reply = await stub.GetIceServers(S.GetIceServersRequest(), metadata=visit.patient)
    assert reply.ice_servers
    assert not [server for server in reply.ice_servers if server.username or server.credential]
    assert all(url.startswith("stun:") for server in reply.ice_servers for url in server.urls)

    # Another user's token: another patient's, or the same visit's patient token shown
    # by its clinician.
    others = await flows.join_token(other, "patient")
    denied = (grpc.StatusCode.PERMISSION_DENIED, "JOIN_TOKEN_NOT_YOURS")
    assert await refused(stub, others, visit.patient) == denied
    assert await refused(stub, own, visit.clinician) == denied

    # A token of another visit naming the caller: not the visit's participant.
    foreign = session_signed(sig, other, "patient", sub=visit.patient_id)
    invalid = (grpc.StatusCode.PERMISSION_DENIED, "INVALID_JOIN_TOKEN")
    assert await refused(stub, foreign, visit.patient) == invalid
    # Nor one the session service did not sign (a fresh key with the same kid scheme).
    stranger = SigningKey.load_or_create(sig.home / "stranger-key")
    unsigned = stranger.sign(jwt.decode(own, options={"verify_signature": False}), 600)
    assert await refused(stub, unsigned, visit.patient) == invalid

    # The join window closed (the token itself still valid): no more credentials.
    closed = session_signed(sig, visit, "patient", window_end=int(time.time()) - 1)
    assert await refused(stub, closed, visit.patient) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OUTSIDE_JOIN_WINDOW",
    )


async def test_usernames_are_opaque_and_lifetimes_end_with_the_window(
    sig: SignalingStack, flows: Flows, stub: signaling_pb2_grpc.SignalingServiceAsyncStub
) -> None:
    visit = await flows.ready_visit()
    patient_token = await flows.join_token(visit, "patient")
    before = int(time.time())
    patient = await turn_of(stub, patient_token, visit.patient)
    after = int(time.time())
    clinician = await turn_of(stub, await flows.join_token(visit, "clinician"), visit.clinician)

    for turn in (patient, clinician):
        match = OPAQUE.match(turn.username)
        assert match, turn.username
        for identifier in (visit.visit_id, visit.patient_id, visit.clinician_id):
            assert identifier not in turn.username
        assert int(match.group(1)) == turn.expire_time.seconds
        assert turn.credential == turn_password(TURN_SECRET, turn.username)
    assert patient.username.split(":")[1] != clinician.username.split(":")[1]

    # A window that ends after the TTL: the TTL bounds the credential...
    window_end = jwt.decode(patient_token, options={"verify_signature": False})["window_end"]
    assert window_end > after + TTL, "the visit's window reaches past the TTL"
    assert before + TTL <= patient.expire_time.seconds <= after + TTL
    # ...and a window that ends sooner bounds it instead.
    soon = int(time.time()) + TTL // 4
    early = await turn_of(
        stub, session_signed(sig, visit, "patient", window_end=soon), visit.patient
    )
    assert early.expire_time.seconds == soon
    assert early.username.startswith(f"{soon}:")


async def allocate(port: int, username: str, password: str) -> tuple[str, int]:
    """A TURN allocation on the test's coturn; its relayed address."""
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", port), username, password
    )
    try:
        return transport.get_extra_info("sockname")  # type: ignore[no-any-return]
    finally:
        transport.close()


async def test_coturn_allocates_with_the_issued_credentials_and_refuses_others(
    sig: SignalingStack, flows: Flows, stub: signaling_pb2_grpc.SignalingServiceAsyncStub
) -> None:
    visit = await flows.ready_visit()
    turn = await turn_of(stub, await flows.join_token(visit, "patient"), visit.patient)
    relayed = await allocate(sig.turn_port, turn.username, turn.credential)
    assert relayed[0] == "127.0.0.1"

    # coturn checks what signaling issues: a wrong password, or a username in the same
    # scheme whose expiry passed, gets no allocation.
    with pytest.raises(stun.TransactionFailed):
        await allocate(sig.turn_port, turn.username, turn_password("not-the-secret", turn.username))
    expired = f"{int(time.time()) - 1}:{turn.username.split(':')[1]}"
    with pytest.raises(stun.TransactionFailed):
        await allocate(sig.turn_port, expired, turn_password(TURN_SECRET, expired))
