"""Idempotent mutations: a retry with the same `request_id` returns the first answer.

Every service keeps the answers it gave in its own `idempotency_records` table (each
service's first migration creates it), written in the same transaction as the change
itself, so an answer is stored if and only if the change is. An answer that carries
PHI (a field marked in the proto, or diagnosis codes) is stored encrypted with the
service's field cipher, its request digest too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import Text, exc
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from telemesh.auth import current_principal
from telemesh.db import Database
from telemesh.db_types import UtcDateTime
from telemesh.errors import TelemeshError, invalid
from telemesh.field_crypto import FieldCipher
from telemesh.phi import phi_paths
from telemesh.validation import Violations

R = TypeVar("R", bound=Message)


TABLE = "idempotency_records"


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = TABLE

    request_id: str = Field(primary_key=True, max_length=64)
    method: str = Field(max_length=200)
    # A SHA-256 in hex, or (for answers that hold PHI) that digest sealed.
    request_digest: str = Field(sa_type=Text)
    response: bytes

    create_time: datetime = Field(sa_type=UtcDateTime)


def request_digest(method: str, request: Message) -> str:
    """What a request_id stands for: the method, the caller and the request's content (a
    reused id must come with the same three)."""
    principal = current_principal()
    hasher = hashlib.sha256()
    hasher.update(f"{method}\0{principal.role}\0{principal.subject}\0".encode())
    hasher.update(request.SerializeToString(deterministic=True))
    return hasher.hexdigest()


def _seal(response: Message, request_id: str, cipher: FieldCipher | None) -> bytes:
    raw = response.SerializeToString()
    if cipher is None:
        return raw
    return cipher.encrypt_bytes(raw, table=TABLE, column="response", row_id=request_id)


def _unseal(stored: bytes, request_id: str, cipher: FieldCipher | None) -> bytes:
    if cipher is None:
        return stored
    return cipher.decrypt_bytes(stored, table=TABLE, column="response", row_id=request_id)


def _seal_digest(digest: str, request_id: str, cipher: FieldCipher | None) -> str:
    """The digest as stored: sealed with the answer's cipher, since a bare SHA-256 of a
    request with little PHI in it (a few diagnosis codes) is easily guessed."""
    if cipher is None:
        return digest
    return cipher.encrypt(digest, table=TABLE, column="request_digest", row_id=request_id)


def _open_digest(stored: str, request_id: str, cipher: FieldCipher | None) -> str:
    if cipher is None:
        return stored
    return cipher.decrypt(stored, table=TABLE, column="request_digest", row_id=request_id)


async def _replay(
    session: AsyncSession,
    request_id: str,
    digest: str,
    response_type: type[R],
    cipher: FieldCipher | None,
) -> R | None:
    record = await session.get(IdempotencyRecord, request_id)
    if record is None:
        return None
    if _open_digest(record.request_digest, request_id, cipher) != digest:
        raise invalid("request_id", "this request_id was already used for a different request")
    response = response_type()
    response.ParseFromString(_unseal(record.response, request_id, cipher))
    return response


async def run_idempotent(
    db: Database,
    method: str,
    request: Message,
    response_type: type[R],
    work: Callable[[AsyncSession], Awaitable[R]],
    *,
    cipher: FieldCipher | None = None,
) -> R:
    """Runs `work` once per `request.request_id` in a write transaction.

    A repeat of the same request returns the stored answer and changes nothing (its
    transaction rolls back); a different request under a used id is INVALID_ARGUMENT.
    Concurrent first attempts race: the loser's transaction fails (on the record's
    primary key, or on whatever the work itself conflicts with), rolls back, and
    replays the winner's answer.
    """
    # An answer that carries PHI is stored only encrypted.
    assert cipher is not None or not phi_paths(response_type.DESCRIPTOR), (
        f"{response_type.DESCRIPTOR.full_name} holds PHI: pass the service's cipher"
    )
    request_id: str = getattr(request, "request_id")  # noqa: B009 - every mutating RPC has it
    check = Violations()
    check.uuid("request_id", request_id)
    check.raise_if_any()
    digest = request_digest(method, request)

    async def attempt(session: AsyncSession) -> R:
        # Optimistic: a first attempt (the common case) costs no lookup. A repeat runs
        # into the stored record's primary key (or into what its twin changed) and
        # rolls back whole; the replay below then answers it.
        response = await work(session)
        session.add(
            IdempotencyRecord(
                request_id=request_id,
                method=method,
                request_digest=_seal_digest(digest, request_id, cipher),
                response=_seal(response, request_id, cipher),
                create_time=datetime.now(UTC),
            )
        )
        await session.flush()
        return response

    try:
        return await db.run_write(attempt)
    except (exc.IntegrityError, TelemeshError):
        # A concurrent twin of this request may have committed first; then its answer,
        # not the conflict it caused us (a unique key, a taken slot), is the reply.
        async with db.read() as session:
            stored = await _replay(session, request_id, digest, response_type, cipher)
        if stored is None:
            raise
        return stored
