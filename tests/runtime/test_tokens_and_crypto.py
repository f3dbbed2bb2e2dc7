"""Runtime pieces on their own: tokens, field encryption, paging, settings, PHI marks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemesh.config import ConfigError, RuntimeSettings, load, setting
from telemesh.errors import InvalidArgument
from telemesh.field_crypto import DecryptionError, FieldCipher, FieldKeys
from telemesh.identity.tokens import DevIssuer, InvalidToken, JwksVerifier
from telemesh.paging import PageTokens, decode_token, encode_token, page_size
from telemesh.phi import identifiers, scrubbed
from telemesh.session.v1 import session_pb2


def test_a_token_verifies_and_a_tampered_one_does_not(tmp_path: Path) -> None:
    issuer = DevIssuer(tmp_path)
    verifier = JwksVerifier(issuer.jwks_path)
    token = issuer.mint("p-1", "patient")
    claims = verifier.verify(token)
    assert (claims.subject, claims.role) == ("p-1", "patient")
    header, payload, signature = token.split(".")
    forged = ".".join(
        [header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")]
    )
    with pytest.raises(InvalidToken):
        verifier.verify(forged)


def test_a_cached_token_still_expires(tmp_path: Path) -> None:
    issuer = DevIssuer(tmp_path)
    verifier = JwksVerifier(issuer.jwks_path)
    token = issuer.mint("p-1", "patient", ttl_seconds=1)
    verifier.verify(token)
    time.sleep(1.1)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_a_withdrawn_key_no_longer_verifies_cached_tokens(tmp_path: Path) -> None:
    issuer = DevIssuer(tmp_path)
    verifier = JwksVerifier(issuer.jwks_path)
    token = issuer.mint("p-1", "patient")
    verifier.verify(token)
    verifier.set_jwks({"keys": []})
    with pytest.raises(InvalidToken):
        verifier.verify(token, load=False)


def test_field_encryption_binds_values_to_their_row(tmp_path: Path) -> None:
    cipher = FieldCipher(FieldKeys.load_or_create(tmp_path / "keys.json"))
    sealed = cipher.encrypt("Zelda", table="patients", column="display_name", row_id="p-1")
    assert "Zelda" not in sealed
    assert cipher.decrypt(sealed, table="patients", column="display_name", row_id="p-1") == "Zelda"
    with pytest.raises(DecryptionError):
        cipher.decrypt(sealed, table="patients", column="display_name", row_id="p-2")


def test_keys_rotate_new_first_old_still_decrypt(tmp_path: Path) -> None:
    old = FieldKeys.load_or_create(tmp_path / "keys.json")
    sealed = FieldCipher(old).encrypt("x@example.org", table="t", column="c", row_id="1")
    data = json.loads((tmp_path / "keys.json").read_text())
    new_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    rotated = FieldKeys.parse(
        f"k-new:{new_key}," + ",".join(f"{k}:{v}" for k, v in data["keys"].items())
    )
    cipher = FieldCipher(rotated)
    assert cipher.decrypt(sealed, table="t", column="c", row_id="1") == "x@example.org"
    assert cipher.needs_rotation(sealed)
    assert not cipher.needs_rotation(cipher.encrypt("y", table="t", column="c", row_id="1"))


def test_page_tokens_belong_to_their_query() -> None:
    token = encode_token({"after": 5}, {"q": 1})
    assert decode_token(token, {"q": 1}) == {"after": 5}
    with pytest.raises(InvalidArgument):
        decode_token(token, {"q": 2})
    with pytest.raises(InvalidArgument):
        decode_token("%%%", {"q": 1})
    assert page_size(0) == 100
    with pytest.raises(InvalidArgument):
        page_size(501)


def test_replicas_with_one_page_token_secret_read_each_others_tokens(tmp_path: Path) -> None:
    secret = "ab" * 32
    # Two replicas with homes of their own (pods), one secret from the environment.
    first = PageTokens.for_service(tmp_path / "pod-1", "session", secret)
    second = PageTokens.for_service(tmp_path / "pod-2", "session", secret)
    token = first.encode({"after": 7}, {"q": 1})
    assert second.decode(token, {"q": 1}) == {"after": 7}
    # Without it each home makes its own, and the other replica refuses the token.
    own = PageTokens.for_service(tmp_path / "pod-3", "session")
    with pytest.raises(InvalidArgument):
        own.decode(token, {"q": 1})
    with pytest.raises(ValueError, match="16 bytes"):
        PageTokens.for_service(tmp_path, "session", "abcd")


def test_settings_come_from_the_environment() -> None:
    settings = load(
        RuntimeSettings, {"TELEMESH_DRAIN_SECONDS": "2.5", "TELEMESH_DEV_ISSUER": "off"}
    )
    assert settings.drain_seconds == 2.5
    assert settings.dev_issuer is False
    assert settings.database("consent").endswith("consent.db")

    @dataclass(frozen=True)
    class Numbers:
        count: int = setting("X_COUNT", 1, "a count")

    with pytest.raises(ConfigError, match="X_COUNT"):
        load(Numbers, {"X_COUNT": "many"})


def test_phi_marks_decide_what_leaves_a_service() -> None:
    request = session_pb2.CreatePatientRequest(
        request_id="r-1",
        patient=session_pb2.Patient(patient_id="p-1", display_name="Zelda", email="z@x.org"),
    )
    assert identifiers(request) == {"request_id": "r-1", "patient.patient_id": "p-1"}
    assert scrubbed(request)["patient"]["display_name"] == "[phi]"
