"""Finding 8: a signing key removed from the JWKS stops working, without a restart, at
the edge and at the services, within TELEMESH_JWKS_REFRESH_SECONDS (here 1 s; waited
for with a bounded poll). Real Envoy, real services, through `telemesh up`."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from telemesh.config import ConfigError, RuntimeSettings, load
from telemesh.identity.signing_keys import SigningKey
from telemesh.identity.tokens import InvalidToken, JwksVerifier, issuer_folder
from tests.security import forged_tokens
from tests.security.edge_calls import start_mesh, through_edge, through_sidecar
from tests.support.mesh import MeshUnderTest

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
# Far more than the 1 s interval: the poll's bound, not a claim about timing.
PATIENCE_SECONDS = 30.0

Call = Callable[[MeshUnderTest, str], tuple[grpc.StatusCode, str]]
WHERE: dict[str, Call] = {
    "edge": through_edge,
    # signaling's sidecar to the session service: the service checks the token itself.
    "service": lambda mesh, token: through_sidecar(mesh, "signaling", token),
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshUnderTest]:
    stack = start_mesh(tmp_path_factory.mktemp("key-removal"), TELEMESH_JWKS_REFRESH_SECONDS="1")
    try:
        yield stack
    finally:
        stack.stop()


def _publish(mesh: MeshUnderTest, *keys: SigningKey) -> None:
    """Replaces the mesh's JWKS file atomically with `keys`."""
    path = issuer_folder(mesh.home) / "jwks.json"
    descriptor, temporary = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"keys": [key.jwk for key in keys]}, handle)
    os.replace(temporary, path)


def _until(call: Call, mesh: MeshUnderTest, token: str, accepted: bool) -> tuple[str, str]:
    """Polls `call` until the token is accepted (or refused); returns the last answer."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while True:
        code, details = call(mesh, token)
        if (code != UNAUTHENTICATED) == accepted:
            return code.name, details
        assert time.monotonic() < deadline, f"still {code.name} ({details})"
        time.sleep(0.2)


@pytest.mark.parametrize("where", list(WHERE))
def test_a_removed_key_stops_working_without_a_restart(
    mesh: MeshUnderTest, tmp_path: Path, where: str
) -> None:
    call = WHERE[where]
    issuer = SigningKey.load_or_create(issuer_folder(mesh.home))
    second = SigningKey.load_or_create(tmp_path / "second-key")
    token = forged_tokens.sign(
        forged_tokens.load_key(second.folder), forged_tokens.claims("p-rotated")
    )
    kept = mesh.token("patient", "p-kept")

    _publish(mesh, issuer, second)
    _until(call, mesh, token, accepted=True)
    # The token is now verified (and, where anything caches, cached) with the second key.
    for _ in range(3):
        assert call(mesh, token)[0] != UNAUTHENTICATED

    _publish(mesh, issuer)
    code, details = _until(call, mesh, token, accepted=False)
    assert code == "UNAUTHENTICATED"
    if where == "edge":
        assert "Jwks" in details or "Jwt" in details, details  # the edge refused it
    # The key that stayed still works.
    assert call(mesh, kept)[0] != UNAUTHENTICATED


# --- the verifier and the setting on their own -------------------------------------


def test_a_replaced_file_with_the_same_mtime_still_drops_the_key(tmp_path: Path) -> None:
    """The verifier compares contents, not modification times (which a copy with `-p`,
    or a coarse file system, leaves unchanged)."""
    first = SigningKey.load_or_create(tmp_path / "first")
    second = SigningKey.load_or_create(tmp_path / "second")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [first.jwk, second.jwk]}))
    verifier = JwksVerifier(jwks, refresh_seconds=0.05)
    token = second.sign(forged_tokens.claims("p-1"), 600)
    assert verifier.verify(token).subject == "p-1"
    stat = jwks.stat()
    jwks.write_text(json.dumps({"keys": [first.jwk, {**first.jwk, "kid": "x" * 43}]}))
    os.utime(jwks, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    def verifies() -> bool:
        try:
            verifier.verify(token)
        except InvalidToken:
            return False
        return True

    deadline = time.monotonic() + PATIENCE_SECONDS
    while verifies():
        assert time.monotonic() < deadline, "the removed key still verifies"
        time.sleep(0.05)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(token)


def test_a_broken_or_missing_file_holds_no_keys(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "key")
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": [')  # half written
    token = key.sign(forged_tokens.claims("p-1"), 600)
    with pytest.raises(InvalidToken):
        JwksVerifier(jwks).verify(token)
    with pytest.raises(InvalidToken):
        JwksVerifier(tmp_path / "missing.json").verify(token)


@pytest.mark.parametrize("value", ["0", "-1", "61", "3600"])
def test_the_refresh_interval_is_bounded(value: str) -> None:
    with pytest.raises(ConfigError, match="TELEMESH_JWKS_REFRESH_SECONDS"):
        load(RuntimeSettings, {"TELEMESH_JWKS_REFRESH_SECONDS": value})
    assert load(RuntimeSettings, {"TELEMESH_JWKS_REFRESH_SECONDS": "60"}).jwks_refresh_seconds == 60


def test_a_newly_published_key_is_picked_up_before_the_interval(tmp_path: Path) -> None:
    """A token naming an unknown key has the file looked at again (at most once a
    second), not only after the full interval (here 60 s, longer than the poll's bound)."""
    first = SigningKey.load_or_create(tmp_path / "first")
    second = SigningKey.load_or_create(tmp_path / "second")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [first.jwk]}))
    verifier = JwksVerifier(jwks, refresh_seconds=60)
    assert verifier.verify(first.sign(forged_tokens.claims("p-1"), 600)).subject == "p-1"
    jwks.write_text(json.dumps({"keys": [first.jwk, second.jwk]}))
    token = second.sign(forged_tokens.claims("p-2"), 600)
    deadline = time.monotonic() + PATIENCE_SECONDS / 2
    while True:
        try:
            assert verifier.verify(token).subject == "p-2"
            return
        except InvalidToken:
            assert time.monotonic() < deadline, "the new key was not picked up"
            time.sleep(0.1)
