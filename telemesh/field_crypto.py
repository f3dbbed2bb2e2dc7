"""Field-level encryption at rest for PHI columns (AES-256-GCM with key ids).

A stored value reads `v1:<key id>:<base64 nonce|ciphertext>`. The associated data binds
it to its table, column and row, so a ciphertext copied into another row or column does
not decrypt. Keys live in a key file (created on first use) or come from the
environment; the first key encrypts, every listed key decrypts, so keys rotate by
putting a new key first and re-encrypting at leisure.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1"
# How every sealed value starts. No plaintext the services keep starts so: not an
# ICD-10 code, not JSON, not serialized protobuf (0x76 0x31 would be field 14 with the
# invalid wire type 6), so a value without it is plaintext still to be sealed.
SEALED_PREFIX = f"{PREFIX}:"


class DecryptionError(Exception):
    """A stored value that no key decrypts (wrong key, tampering, or another row's)."""


@dataclass(frozen=True)
class FieldKeys:
    """The keyring: `active` encrypts, any key in `keys` decrypts."""

    active: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> FieldKeys:
        """`kid:base64key,kid2:base64key2` (the first is active)."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for part in text.split(","):
            kid, _, encoded = part.strip().partition(":")
            key = base64.b64decode(encoded)
            if not kid or len(key) != 32:
                raise ValueError("field keys must be `kid:<base64 of 32 bytes>`, comma-separated")
            keys[kid] = key
            order.append(kid)
        if not order:
            raise ValueError("no field keys given")
        return cls(order[0], keys)

    @classmethod
    def load_or_create(cls, path: Path) -> FieldKeys:
        """Reads the key file at `path`, creating it with one fresh key if missing."""
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            kid = f"k{secrets.token_hex(4)}"
            content = {
                "active": kid,
                "keys": {kid: base64.b64encode(AESGCM.generate_key(256)).decode()},
            }
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            # Owner-only from its first byte, whatever the umask.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(content, indent=2))
            try:
                os.link(temporary, path)  # atomic and refuses to replace another's file
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        data = json.loads(path.read_text())
        keys = {kid: base64.b64decode(value) for kid, value in data["keys"].items()}
        return cls(data["active"], keys)


def service_keyring(home: Path, service: str, keys: str, key_file: Path | None) -> FieldKeys:
    """A service's keys: `keys` (its TELEMESH_<SERVICE>_PHI_KEYS) when set, else its key
    file, by default $TELEMESH_HOME/<service>/phi-keys.json (created with one fresh key
    when missing)."""
    if keys:
        return FieldKeys.parse(keys)
    return FieldKeys.load_or_create(key_file or home / service / "phi-keys.json")


def is_sealed(stored: str | bytes) -> bool:
    """True when `stored` is a sealed value (of any key), not plaintext."""
    if isinstance(stored, bytes):
        return stored.startswith(SEALED_PREFIX.encode())
    return stored.startswith(SEALED_PREFIX)


class FieldCipher:
    """Encrypts and decrypts one column's values for one table."""

    def __init__(self, keys: FieldKeys) -> None:
        self.keys = keys
        self._aead = {kid: AESGCM(key) for kid, key in keys.keys.items()}

    @staticmethod
    def _context(table: str, column: str, row_id: str) -> bytes:
        return f"{table}\0{column}\0{row_id}".encode()

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str) -> str:
        if plaintext == "":
            return ""
        nonce = secrets.token_bytes(12)
        sealed = self._aead[self.keys.active].encrypt(
            nonce, plaintext.encode(), self._context(table, column, row_id)
        )
        return f"{PREFIX}:{self.keys.active}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str, *, table: str, column: str, row_id: str) -> str:
        if stored == "":
            return ""
        try:
            prefix, kid, encoded = stored.split(":", 2)
            raw = base64.b64decode(encoded)
            aead = self._aead[kid]
            if prefix != PREFIX:
                raise ValueError(prefix)
            plaintext = aead.decrypt(raw[:12], raw[12:], self._context(table, column, row_id))
        except Exception:
            raise DecryptionError(f"{table}.{column} of {row_id} does not decrypt") from None
        return plaintext.decode()

    @property
    def active_prefix(self) -> str:
        """How a value sealed with the active key starts."""
        return f"{PREFIX}:{self.keys.active}:"

    def needs_rotation(self, stored: str) -> bool:
        """True when `stored` was sealed with a key other than the active one."""
        return stored != "" and stored.split(":", 2)[1] != self.keys.active

    def encrypt_bytes(self, raw: bytes, *, table: str, column: str, row_id: str) -> bytes:
        """Seals bytes (a serialized message) for a binary column; b"" stays b""."""
        if raw == b"":
            return b""
        plain = base64.b64encode(raw).decode()
        return self.encrypt(plain, table=table, column=column, row_id=row_id).encode()

    def decrypt_bytes(self, stored: bytes, *, table: str, column: str, row_id: str) -> bytes:
        opened = self.decrypt(stored.decode(), table=table, column=column, row_id=row_id)
        return base64.b64decode(opened)
