"""Token claims of the wrong JSON type, in tokens signed with the real issuer key, are
UNAUTHENTICATED at a real service, never INTERNAL: on the first call and on the second
one (where a cached verification used to compare a string `exp` with a number)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from telemesh.session.v1 import session_pb2, session_pb2_grpc
from tests.security import forged_tokens
from tests.support.harness import Stack, bearer

WRONG_TYPES: dict[str, dict[str, Any]] = {
    "sub as a number": {"sub": 12345},
    "sub empty": {"sub": ""},
    "role as a list": {"role": ["admin"]},
    "role as a number": {"role": 7},
    "exp as a string": {"exp": "4102444800"},
    "exp as a boolean": {"exp": True},
    "iat as a string": {"iat": "1700000000"},
    "nbf as a list": {"nbf": [0]},
    "aud as a number": {"aud": 5},
    "aud list with a number": {"aud": ["telemesh", 5]},
}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    home = tmp_path_factory.mktemp("token-claims")
    stack = Stack(home, "sqlite").start("session")
    try:
        yield stack, home
    finally:
        stack.close()


def _call(stack: Stack, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(stack.addresses["session"]) as channel:
        try:
            session_pb2_grpc.SessionServiceStub(channel).GetJoinTokenKeys(
                session_pb2.GetJoinTokenKeysRequest(), metadata=bearer(token), timeout=10
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_good_claims_are_accepted(session: tuple[Stack, Path]) -> None:
    """The control: the same token maker, right types, gets through."""
    stack, home = session
    token = forged_tokens.sign(forged_tokens.issuer_key(home), forged_tokens.claims())
    assert _call(stack, token) == grpc.StatusCode.OK


@pytest.mark.parametrize("kind", list(WRONG_TYPES))
def test_a_claim_of_the_wrong_type_is_unauthenticated(
    session: tuple[Stack, Path], kind: str
) -> None:
    stack, home = session
    claims = forged_tokens.claims(**WRONG_TYPES[kind])
    token = forged_tokens.sign(forged_tokens.issuer_key(home), claims)
    answers = [_call(stack, token), _call(stack, token)]
    assert answers == [grpc.StatusCode.UNAUTHENTICATED] * 2, stack.logs()[-2000:]
