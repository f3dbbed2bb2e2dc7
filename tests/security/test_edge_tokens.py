"""Finding 9: at the edge every bad token is 401 / UNAUTHENTICATED (a wrong audience too,
which Envoy's jwt_authn answers 403 by itself), and a token counts only in the
`authorization` header (never in an `access_token` query parameter). Real Envoy, real
services, through `telemesh up`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from telemesh.identity.signing_keys import SigningKey
from tests.security import forged_tokens
from tests.security.edge_calls import bearer, start_mesh, through_edge, through_edge_grpc_web
from tests.support.mesh import MeshUnderTest

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshUnderTest]:
    stack = start_mesh(tmp_path_factory.mktemp("edge-tokens"))
    try:
        yield stack
    finally:
        stack.stop()


def _signed(**changes: Any) -> Callable[[MeshUnderTest, Path], str]:
    """A token signed by the mesh's own issuer key, with `changes` to good claims."""

    def make(mesh: MeshUnderTest, _tmp: Path) -> str:
        return forged_tokens.sign(
            forged_tokens.issuer_key(mesh.home), forged_tokens.claims(**changes)
        )

    return make


def _foreign_key(mesh: MeshUnderTest, tmp: Path) -> str:
    stranger = SigningKey.load_or_create(tmp / "stranger")
    return forged_tokens.sign(forged_tokens.load_key(stranger.folder), forged_tokens.claims())


BAD_TOKENS: dict[str, Callable[[MeshUnderTest, Path], str]] = {
    "wrong audience": _signed(aud="telemesh-billing-partner"),
    "audience list without ours": _signed(aud=["a", "b"]),
    "wrong issuer": _signed(iss="someone-else"),
    "expired": _signed(iat=1_600_000_000, exp=1_600_000_600),
    "exp as a string": _signed(exp="4102444800"),
    "no exp": lambda mesh, tmp: forged_tokens.sign(
        forged_tokens.issuer_key(mesh.home),
        {k: v for k, v in forged_tokens.claims().items() if k != "exp"},
    ),
    "unknown signing key": _foreign_key,
    "alg none": lambda mesh, tmp: forged_tokens.unsigned(forged_tokens.claims()),
    "not a jwt": lambda mesh, tmp: "e30.e30.c2ln",
}


def test_a_good_token_passes_the_edge(mesh: MeshUnderTest) -> None:
    """The control: the same call with a good token gets past authentication."""
    code, details = through_edge(mesh, mesh.token("patient", "p-edge"))
    assert code not in (UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), details


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_every_bad_token_is_unauthenticated_at_the_edge(
    mesh: MeshUnderTest, tmp_path: Path, kind: str
) -> None:
    token = BAD_TOKENS[kind](mesh, tmp_path)
    code, details = through_edge(mesh, token)
    assert code == UNAUTHENTICATED, (kind, code, details)
    # The edge said so (its jwt_authn), not a service behind it.
    reply = through_edge_grpc_web(mesh, bearer(token))
    assert reply.grpc_status == UNAUTHENTICATED.value[0], (kind, reply)
    assert "Jwt" in reply.grpc_message or "Jwks" in reply.grpc_message, reply.grpc_message


def test_a_token_in_the_query_string_is_not_accepted(mesh: MeshUnderTest) -> None:
    token = mesh.token("patient", "p-query")
    in_header = through_edge_grpc_web(mesh, bearer(token))
    assert in_header.grpc_status not in (None, UNAUTHENTICATED.value[0]), in_header
    in_query = through_edge_grpc_web(mesh, {}, query=f"access_token={token}")
    assert in_query.grpc_status == UNAUTHENTICATED.value[0], in_query
    assert in_query.grpc_message == "Jwt is missing", in_query


def test_a_role_the_allow_list_does_not_name_stays_permission_denied(
    mesh: MeshUnderTest,
) -> None:
    """Only the token's own failures become 401: RBAC's refusal of a valid token whose
    role may not call the method is still PERMISSION_DENIED."""
    code, details = through_edge(mesh, mesh.token("billing", "b-edge"))
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
