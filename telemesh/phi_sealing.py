"""The one pass that keeps PHI columns sealed with the active key, for every service.

A service lists its sealed columns (`SealedColumn`). Two uses of one pass:

- `seal_plaintext`, run by the service at start before it serves: seals values still
  in the clear (rows written before their column was encrypted; a migration cannot read
  the keys, so it moves no values).
- `rotate`, run by `python -m svc_<name>.phi_rotation` after a new key is put first:
  re-encrypts everything not sealed with the active key (plaintext included). Safe
  while the service runs, and again.

Rows are found in SQL (a value's first bytes tell plaintext, and which key sealed it)
and changed in small transactions with compare-and-set updates, so a value the service
rewrote meanwhile is never overwritten with an older one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from telemesh.config import RuntimeSettings, load
from telemesh.db import Database
from telemesh.field_crypto import SEALED_PREFIX, FieldCipher, is_sealed
from telemesh.file_modes import owner_only
from telemesh.logs import log, setup_logging

logger = logging.getLogger("telemesh.phi_sealing")
BATCH = 200


@dataclass(frozen=True)
class SealedColumn:
    """One column whose values are sealed with a service's field cipher.

    `attribute` is the model's attribute; `column` is the name bound into the
    ciphertext (with the table and the row's `key`). A binary column holds bytes (a
    serialized message). `only` limits the column to rows that hold PHI (idempotent
    answers and outbox events of some methods).
    """

    model: type[SQLModel]
    key: str
    attribute: str
    column: str
    binary: bool = False
    only: tuple[str, tuple[str, ...]] | None = field(default=None)

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)

    def _attr(self, name: str) -> Any:
        return getattr(self.model, name)

    def needs_work(self, prefix: str) -> ColumnElement[bool]:
        """Rows whose value is not empty and does not start with `prefix`."""
        value = self._attr(self.attribute)
        marker: str | bytes = prefix.encode() if self.binary else prefix
        empty: str | bytes = b"" if self.binary else ""
        condition = and_(value != empty, func.substr(value, 1, len(marker)) != marker)
        if self.only is not None:
            name, values = self.only
            condition = and_(condition, self._attr(name).in_(values))
        return condition

    def reseal(self, cipher: FieldCipher, stored: Any, row_id: str) -> Any:
        """The value sealed with the active key (plaintext sealed, older keys opened)."""
        context = {"table": self.table, "column": self.column, "row_id": row_id}
        if self.binary:
            raw = cipher.decrypt_bytes(stored, **context) if is_sealed(stored) else stored
            return cipher.encrypt_bytes(raw, **context)
        plain = cipher.decrypt(stored, **context) if is_sealed(stored) else stored
        return cipher.encrypt(plain, **context)


async def _batch(
    session: AsyncSession, spec: SealedColumn, cipher: FieldCipher, prefix: str
) -> int:
    key, value = spec._attr(spec.key), spec._attr(spec.attribute)
    rows = (
        await session.execute(
            select(key, value).where(spec.needs_work(prefix)).order_by(key).limit(BATCH)
        )
    ).all()
    for row_id, stored in rows:
        await session.execute(
            update(spec.model)
            .where(key == row_id, value == stored)  # unchanged since read
            .values({spec.attribute: spec.reseal(cipher, stored, str(row_id))})
        )
    return len(rows)


async def _pass(
    db: Database, cipher: FieldCipher, columns: Sequence[SealedColumn], prefix: str
) -> int:
    changed = 0
    for spec in columns:
        while True:

            async def work(session: Any, spec: SealedColumn = spec) -> int:
                return await _batch(session, spec, cipher, prefix)

            done = await db.run_write(work)
            changed += done
            if done < BATCH:
                break
    return changed


async def seal_plaintext(db: Database, cipher: FieldCipher, columns: Sequence[SealedColumn]) -> int:
    """Seals every value still in the clear; returns how many were sealed."""
    return await _pass(db, cipher, columns, SEALED_PREFIX)


async def rotate(db: Database, cipher: FieldCipher, columns: Sequence[SealedColumn]) -> int:
    """Seals with the active key every value that is not (plaintext or an older key's);
    returns how many values changed. Afterwards the older keys can be dropped."""
    return await _pass(db, cipher, columns, cipher.active_prefix)


def rotation_main(
    service: str, database_url: str, cipher: FieldCipher, columns: Sequence[SealedColumn]
) -> None:
    """The body of `python -m svc_<service>.phi_rotation`."""
    owner_only()
    settings = load(RuntimeSettings)
    setup_logging(f"{service}-phi-rotation", settings.log_level)
    db = Database(database_url)

    async def run() -> int:
        try:
            return await rotate(db, cipher, columns)
        finally:
            await db.dispose()

    changed = asyncio.run(run())
    log(
        logger,
        logging.INFO,
        "PHI re-encrypted with the active key",
        service=service,
        values=changed,
        active_key=cipher.keys.active,
    )
    print(f"re-encrypted {changed} values with key {cipher.keys.active}")
