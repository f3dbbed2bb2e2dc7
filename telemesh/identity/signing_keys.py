"""ES256 signing keys kept in a folder, published as a JSON Web Key Set.

Used by the dev token issuer (end-user and service tokens) and by the session service
(join tokens): one way to keep a key, sign a JWT and publish what verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from telemesh.file_modes import private_folder, write_private

KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK of a P-256 key, with its RFC 7638 thumbprint as `kid`."""
    numbers = key.public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    thumbprint = hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode())
    return {**jwk, "kid": _b64(thumbprint.digest()), "alg": "ES256", "use": "sig"}


class SigningKey:
    """An EC P-256 key in `folder` (created once, atomically) and its JWKS beside it."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, folder: Path) -> None:
        self._key = private_key
        self.folder = folder
        self.jwk = public_jwk(private_key.public_key())

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    @classmethod
    def load_or_create(cls, folder: Path) -> SigningKey:
        """Loads the key in `folder`, creating it first when missing.

        Several processes may start at once: each builds a candidate in a temporary
        folder and renames it into place; the first rename wins and the rest load it.
        """
        folder = folder.resolve()
        if not (folder / KEY_FILE).exists():
            private_folder(folder.parent)
            candidate = Path(tempfile.mkdtemp(prefix=".keys-", dir=folder.parent))
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(candidate / KEY_FILE, pem)
            jwks = {"keys": [public_jwk(key.public_key())]}
            write_private(candidate / JWKS_FILE, json.dumps(jwks, indent=2).encode())
            try:
                os.rename(candidate, folder)
            except OSError:
                shutil.rmtree(candidate, ignore_errors=True)
        pem = (folder / KEY_FILE).read_bytes()
        private_key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{folder / KEY_FILE} is not an EC private key")
        return cls(private_key, folder)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def sign(self, claims: dict[str, Any], ttl_seconds: int) -> str:
        """A compact JWS of `claims` plus `iat` and `exp`."""
        now = int(time.time())
        payload = {**claims, "iat": now, "exp": now + ttl_seconds}
        return jwt.encode(payload, self._key, algorithm="ES256", headers={"kid": self.kid})
