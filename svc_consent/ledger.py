"""The consent ledger: consents and their versions, changed only by appending versions.

A new version is written with optimistic concurrency: the head row's `version` is
compared and set in one UPDATE, and the (consent, version) primary key refuses a second
writer of the same version, so concurrent grants and revocations never lose one. The
change sequence (what the watch stream numbers) is taken under the audit chain's lock,
which every writing transaction holds first: sequences therefore commit in order, and a
reader that sees change N has seen every change before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent.models import ConsentRow, ConsentVersionRow
from telemesh.consent.v1 import consent_pb2
from telemesh.errors import Aborted


@dataclass(frozen=True)
class ConsentKey:
    """What a consent is about: one consent per patient, category and partner clinic."""

    patient_id: str
    category: int
    partner_clinic_id: str = ""


@dataclass(frozen=True)
class VersionContent:
    """The fields of a new version that its writer decides."""

    state: int
    text_version: str
    text_sha256: str
    capture_method: int
    captured_by: str
    valid_from: datetime
    valid_until: datetime | None


async def get_consent(session: AsyncSession, consent_id: str) -> ConsentRow | None:
    """The consent's head row as the database has it now (never a cached copy)."""
    row: ConsentRow | None = await session.get(ConsentRow, consent_id, populate_existing=True)
    return row


async def head_change_sequence(session: AsyncSession) -> int:
    result = await session.exec(select(func.max(ConsentVersionRow.change_sequence)))
    value: int | None = result.one()
    return value or 0


async def append_version(
    session: AsyncSession,
    key: ConsentKey,
    current: ConsentVersionRow | None,
    content: VersionContent,
    record_time: datetime,
) -> ConsentVersionRow:
    """Writes the version after `current` (or the first of a new consent).

    `current` is the newest version the caller read in this transaction; a concurrent
    writer that moved the head past it first makes this ABORTED.
    """
    change_sequence = await head_change_sequence(session) + 1
    if current is None:
        consent_id = str(uuid.uuid4())
        version = 1
        session.add(
            ConsentRow(
                consent_id=consent_id,
                patient_id=key.patient_id,
                category=key.category,
                partner_clinic_id=key.partner_clinic_id,
                version=version,
                state=content.state,
                valid_until=content.valid_until,
            )
        )
        await session.flush()
    else:
        consent_id = current.consent_id
        version = current.version + 1
        moved = await session.exec(
            update(ConsentRow)
            .where(
                and_(
                    col(ConsentRow.consent_id) == consent_id,
                    col(ConsentRow.version) == current.version,
                )
            )
            .values(version=version, state=content.state, valid_until=content.valid_until)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            raise Aborted(
                "CONSENT_VERSION_CONFLICT",
                "the consent changed meanwhile; read it again and retry",
                {"consent_id": consent_id},
            )
    row = ConsentVersionRow(
        consent_id=consent_id,
        version=version,
        change_sequence=change_sequence,
        patient_id=key.patient_id,
        category=key.category,
        partner_clinic_id=key.partner_clinic_id,
        state=content.state,
        text_version=content.text_version,
        text_sha256=content.text_sha256,
        capture_method=content.capture_method,
        captured_by=content.captured_by,
        record_time=record_time,
        valid_from=content.valid_from,
        valid_until=content.valid_until,
    )
    session.add(row)
    await session.flush()
    return row


def _newest_versions() -> Any:
    join = and_(
        col(ConsentRow.consent_id) == col(ConsentVersionRow.consent_id),
        col(ConsentRow.version) == col(ConsentVersionRow.version),
    )
    return select(ConsentVersionRow).join(ConsentRow, join)


async def current_version(session: AsyncSession, consent_id: str) -> ConsentVersionRow | None:
    """The consent's newest version (what its head row points at), in one query."""
    result = await session.exec(_newest_versions().where(ConsentRow.consent_id == consent_id))
    row: ConsentVersionRow | None = result.first()
    return row


async def find_consent(session: AsyncSession, key: ConsentKey) -> ConsentVersionRow | None:
    """The newest version of the consent about `key`, if there is one."""
    statement = _newest_versions().where(
        ConsentRow.patient_id == key.patient_id,
        ConsentRow.category == key.category,
        ConsentRow.partner_clinic_id == key.partner_clinic_id,
    )
    result = await session.exec(statement)
    row: ConsentVersionRow | None = result.first()
    return row


async def newest_versions(
    session: AsyncSession, keys: Collection[ConsentKey]
) -> dict[ConsentKey, ConsentVersionRow]:
    """The newest version of each consent that `keys` name, in one query."""
    if not keys:
        return {}
    columns = tuple_(
        col(ConsentRow.patient_id), col(ConsentRow.category), col(ConsentRow.partner_clinic_id)
    )
    wanted = [(k.patient_id, k.category, k.partner_clinic_id) for k in set(keys)]
    result = await session.exec(_newest_versions().where(columns.in_(wanted)))
    return {
        ConsentKey(row.patient_id, row.category, row.partner_clinic_id): row for row in result.all()
    }


async def version_recorded_by(
    session: AsyncSession, key: ConsentKey, at: datetime
) -> ConsentVersionRow | None:
    """The newest version recorded at or before `at`: the one in force then."""
    statement = (
        select(ConsentVersionRow)
        .join(ConsentRow, col(ConsentRow.consent_id) == col(ConsentVersionRow.consent_id))
        .where(
            ConsentRow.patient_id == key.patient_id,
            ConsentRow.category == key.category,
            ConsentRow.partner_clinic_id == key.partner_clinic_id,
            col(ConsentVersionRow.record_time) <= at,
        )
        .order_by(col(ConsentVersionRow.version).desc())
        .limit(1)
    )
    result = await session.exec(statement)
    row: ConsentVersionRow | None = result.first()
    return row


async def list_current(
    session: AsyncSession,
    patient_id: str,
    after_consent_id: str,
    limit: int,
    partner_clinic_id: str | None = None,
) -> Sequence[ConsentVersionRow]:
    """A patient's consents at their newest versions, by consent id."""
    statement = (
        _newest_versions()
        .where(ConsentRow.patient_id == patient_id)
        .where(col(ConsentRow.consent_id) > after_consent_id)
        .order_by(col(ConsentRow.consent_id))
        .limit(limit)
    )
    if partner_clinic_id is not None:
        statement = statement.where(
            ConsentRow.category == consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING,
            ConsentRow.partner_clinic_id == partner_clinic_id,
        )
    result = await session.exec(statement)
    rows: Sequence[ConsentVersionRow] = result.all()
    return rows


async def list_versions(
    session: AsyncSession, consent_id: str, after_version: int, limit: int
) -> Sequence[ConsentVersionRow]:
    statement = (
        select(ConsentVersionRow)
        .where(ConsentVersionRow.consent_id == consent_id)
        .where(col(ConsentVersionRow.version) > after_version)
        .order_by(col(ConsentVersionRow.version))
        .limit(limit)
    )
    result = await session.exec(statement)
    return result.all()


async def changes_after(
    session: AsyncSession, after_sequence: int, patient_id: str, limit: int
) -> tuple[Sequence[ConsentVersionRow], int]:
    """Changes after `after_sequence` (one patient's, or all when empty) and the newest
    change sequence they were read against."""
    head = await head_change_sequence(session)
    statement = (
        select(ConsentVersionRow)
        .where(col(ConsentVersionRow.change_sequence) > after_sequence)
        .where(col(ConsentVersionRow.change_sequence) <= head)
        .order_by(col(ConsentVersionRow.change_sequence))
        .limit(limit)
    )
    if patient_id:
        statement = statement.where(ConsentVersionRow.patient_id == patient_id)
    result = await session.exec(statement)
    return result.all(), head


async def due_for_expiry(
    session: AsyncSession, now: datetime, limit: int
) -> Sequence[ConsentVersionRow]:
    """The newest versions of active consents whose validity period has ended."""
    statement = (
        _newest_versions()
        .where(ConsentRow.state == consent_pb2.CONSENT_STATE_ACTIVE)
        .where(col(ConsentRow.valid_until).is_not(None))
        .where(col(ConsentRow.valid_until) <= now)
        .order_by(col(ConsentRow.valid_until))
        .limit(limit)
    )
    result = await session.exec(statement)
    rows: Sequence[ConsentVersionRow] = result.all()
    return rows
