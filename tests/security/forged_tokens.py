"""Tokens an attacker (or a buggy identity provider) would present: signed with a real
key but with claims PyJWT's encoder would refuse to write, or signed with a key the mesh
does not know."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from telemesh.identity.signing_keys import KEY_FILE, public_jwk
from telemesh.identity.tokens import AUDIENCE, ISSUER, issuer_folder


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_key(folder: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((folder / KEY_FILE).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def issuer_key(home: Path) -> ec.EllipticCurvePrivateKey:
    """The dev issuer's own key in `home` (the key `telemesh token` signs with)."""
    return load_key(issuer_folder(home))


def sign(key: ec.EllipticCurvePrivateKey, payload: Any) -> str:
    """A compact ES256 JWS of `payload` exactly as given, `kid` the key's thumbprint."""
    header = {"alg": "ES256", "typ": "JWT", "kid": public_jwk(key.public_key())["kid"]}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def claims(subject: str = "p-forged", role: str = "patient", **changes: Any) -> dict[str, Any]:
    """Good claims for the dev issuer, with `changes` on top."""
    now = int(time.time())
    good = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "role": role}
    return {**good, "iat": now, "exp": now + 3600, **changes}


def unsigned(payload: dict[str, Any]) -> str:
    """`alg: none`: no signature at all."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."
