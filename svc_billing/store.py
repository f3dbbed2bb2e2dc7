"""Charges in the database: recording a completion once per visit, reading them, and
moving their state with a history row per move. Records come with their sealed columns
opened (svc_billing.sealed)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, exc, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_billing.models import (
    BILLABLE,
    BILLED,
    NOT_BILLABLE,
    VOIDED,
    ChargeEventRow,
    ChargeRow,
)
from svc_billing.sealed import open_codes, open_digest
from telemesh.auth import Principal
from telemesh.db import Database
from telemesh.errors import FailedPrecondition, NotFound, invalid
from telemesh.field_crypto import FieldCipher
from telemesh.group_commit import GroupCommit
from telemesh.logs import log
from telemesh.paging import decode_token, page_of

logger = logging.getLogger("svc_billing.store")

# The state moves a charge may make: target state -> states it may come from.
TRANSITIONS = {BILLED: {BILLABLE}, VOIDED: {BILLABLE, BILLED}}


@dataclass(frozen=True)
class ChargeRecord:
    """A charge, its history (oldest first) and its sealed columns, opened."""

    row: ChargeRow
    history: tuple[ChargeEventRow, ...]
    diagnosis_codes: tuple[str, ...]
    completion_digest: str


def _record(cipher: FieldCipher, row: ChargeRow, history: Sequence[ChargeEventRow]) -> ChargeRecord:
    return ChargeRecord(row, tuple(history), open_codes(cipher, row), open_digest(cipher, row))


@dataclass(frozen=True)
class ChargeFilter:
    patient_id: str = ""
    visit_id: str = ""
    states: tuple[str, ...] = ()


async def _history(
    session: AsyncSession, charge_ids: Sequence[str]
) -> dict[str, list[ChargeEventRow]]:
    if not charge_ids:
        return {}
    rows = await session.exec(
        select(ChargeEventRow)
        .where(col(ChargeEventRow.charge_id).in_(charge_ids))
        .order_by(col(ChargeEventRow.charge_id), col(ChargeEventRow.sequence))
    )
    history: dict[str, list[ChargeEventRow]] = defaultdict(list)
    for event in rows.all():
        history[event.charge_id].append(event)
    return history


async def _with_history(
    session: AsyncSession, cipher: FieldCipher, rows: Sequence[ChargeRow]
) -> list[ChargeRecord]:
    history = await _history(session, [row.charge_id for row in rows])
    return [_record(cipher, row, history.get(row.charge_id, ())) for row in rows]


async def _row(session: AsyncSession, charge_id: str) -> ChargeRow:
    row = await session.get(ChargeRow, charge_id)
    if row is None:
        raise NotFound("charge", charge_id)
    return row


def _cursor(row: ChargeRow) -> dict[str, Any]:
    """Where the page after `row` starts (pages go newest first)."""
    return {"t": row.create_time.isoformat(), "id": row.charge_id}


def _after(cursor: dict[str, Any] | None) -> tuple[datetime, str] | None:
    """The (create_time, charge_id) a page starts after."""
    if cursor is None:
        return None
    try:
        return datetime.fromisoformat(cursor["t"]), str(cursor["id"])
    except (KeyError, TypeError, ValueError):
        raise invalid("page_token", "is not a token this service issued") from None


async def _by_visits(
    session: AsyncSession, cipher: FieldCipher, visit_ids: Sequence[str]
) -> dict[str, ChargeRecord]:
    """The charges already recorded for these visits, by visit id."""
    rows = (
        await session.exec(select(ChargeRow).where(col(ChargeRow.visit_id).in_(set(visit_ids))))
    ).all()
    return {record.row.visit_id: record for record in await _with_history(session, cipher, rows)}


def _refusal(state: str, target: str) -> FailedPrecondition:
    if state == target:
        reason, message = f"CHARGE_ALREADY_{target.upper()}", f"the charge is already {target}"
    else:
        allowed = " or ".join(sorted(TRANSITIONS[target]))
        reason = f"CHARGE_{state.upper()}"
        message = f"the charge is {state.replace('_', ' ')}; only {allowed} charges can be {target}"
    return FailedPrecondition(reason, message, {"state": state})


# What building a new charge gives: the charge and the first row of its history.
Build = Callable[[], tuple[ChargeRow, ChargeEventRow]]
# A completion's outcome in a batch: its charge and whether it is new, or its own error.
Outcome = tuple[ChargeRecord, bool] | Exception
# Completions per transaction at most (each batch is one commit, one fsync).
MAX_BATCH = 64


class ChargeStore:
    def __init__(self, db: Database, cipher: FieldCipher) -> None:
        self.db = db
        self.cipher = cipher
        # Completions arrive many at a time (every session replica's outbox relay
        # delivers several at once): one transaction records all that are waiting.
        self._recorder: GroupCommit[tuple[str, Build], Outcome] = GroupCommit(
            self._record_batch, max_batch=MAX_BATCH
        )

    async def record_once(self, visit_id: str, build: Build) -> tuple[ChargeRecord, bool]:
        """The visit's charge: the one recorded before (False), or the one `build`
        makes, now stored and committed (True).

        Completions waiting together are committed in one transaction; the unique
        constraint on visit_id decides races with other replicas.
        """
        outcome = await self._recorder.submit((visit_id, build))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _record_batch(self, items: list[tuple[str, Build]]) -> list[Outcome]:
        try:
            return await self.db.run_write(lambda session: self._write_batch(session, items))
        except exc.IntegrityError:
            # Another replica recorded one of these visits meanwhile: each on its own.
            return [await self._record_alone(visit_id, build) for visit_id, build in items]

    async def _write_batch(
        self, session: AsyncSession, items: list[tuple[str, Build]]
    ) -> list[Outcome]:
        known = await _by_visits(session, self.cipher, [visit_id for visit_id, _ in items])
        outcomes: list[Outcome] = []
        new: list[tuple[ChargeRow, ChargeEventRow]] = []
        for visit_id, build in items:
            if visit_id in known:  # recorded before, or earlier in this batch
                outcomes.append((known[visit_id], False))
                continue
            try:
                row, event = build()
            except Exception as error:  # this completion's own refusal, not the batch's
                outcomes.append(error)
                continue
            known[visit_id] = _record(self.cipher, row, (event,))
            outcomes.append((known[visit_id], True))
            new.append((row, event))
        session.add_all([row for row, _ in new])
        await session.flush()  # the charges before their history rows (foreign key)
        session.add_all([event for _, event in new])
        await session.flush()
        return outcomes

    async def _record_alone(self, visit_id: str, build: Build) -> Outcome:
        """One completion in its own transaction; losing a race reads the winner's."""

        async def work(session: AsyncSession) -> Outcome:
            [outcome] = await self._write_batch(session, [(visit_id, build)])
            return outcome

        try:
            return await self.db.run_write(work)
        except exc.IntegrityError:
            async with self.db.read() as session:
                existing = (await _by_visits(session, self.cipher, [visit_id])).get(visit_id)
            if existing is None:
                raise
            log(logger, logging.INFO, "concurrent delivery lost the race", visit_id=visit_id)
            return existing, False

    async def stop(self) -> None:
        """Lets the batch being written finish."""
        await self._recorder.stop()

    async def get(self, charge_id: str) -> ChargeRecord:
        """The charge and its history."""
        async with self.db.read() as session:
            row = await _row(session, charge_id)
            return (await _with_history(session, self.cipher, [row]))[0]

    async def row(self, charge_id: str) -> ChargeRow:
        """The charge without its history (its sealed columns sealed)."""
        async with self.db.read() as session:
            return await _row(session, charge_id)

    def diagnosis_codes(self, row: ChargeRow) -> tuple[str, ...]:
        """The row's diagnosis codes, opened."""
        return open_codes(self.cipher, row)

    async def page(
        self, where: ChargeFilter, page_token: str, size: int
    ) -> tuple[list[ChargeRecord], str]:
        """Up to `size` charges, newest first, from `page_token` on, and the token of the
        next page ("" on the last)."""
        query_key = {
            "patient_id": where.patient_id,
            "visit_id": where.visit_id,
            "states": where.states,
        }
        after = _after(decode_token(page_token, query_key, {"t": str, "id": str}))
        query = select(ChargeRow)
        if where.patient_id:
            query = query.where(col(ChargeRow.patient_id) == where.patient_id)
        if where.visit_id:
            query = query.where(col(ChargeRow.visit_id) == where.visit_id)
        if where.states:
            query = query.where(col(ChargeRow.state).in_(where.states))
        if after is not None:
            time, charge_id = after
            query = query.where(
                or_(
                    col(ChargeRow.create_time) < time,
                    and_(
                        col(ChargeRow.create_time) == time,
                        col(ChargeRow.charge_id) < charge_id,
                    ),
                )
            )
        query = query.order_by(
            col(ChargeRow.create_time).desc(), col(ChargeRow.charge_id).desc()
        ).limit(size + 1)
        async with self.db.read() as session:
            rows, token = page_of((await session.exec(query)).all(), size, _cursor, query_key)
            return await _with_history(session, self.cipher, rows), token

    async def for_statement(self, patient_id: str, start: date, end: date) -> list[ChargeRow]:
        """The patient's charges with a date of service in [start, end], not-billable
        records left out, by date of service."""
        query = (
            select(ChargeRow)
            .where(
                col(ChargeRow.patient_id) == patient_id,
                col(ChargeRow.service_date) >= start,
                col(ChargeRow.service_date) <= end,
                col(ChargeRow.state) != NOT_BILLABLE,
            )
            .order_by(col(ChargeRow.service_date), col(ChargeRow.create_time))
        )
        async with self.db.read() as session:
            return list((await session.exec(query)).all())

    async def transition(
        self,
        session: AsyncSession,
        charge_id: str,
        target: str,
        actor: Principal,
        reason: str = "",
    ) -> ChargeRecord:
        """Moves the charge to `target` in the caller's transaction, with a history row.

        Only the state columns change; the coded fields are never written again.
        """
        row = (
            await session.exec(
                select(ChargeRow).where(col(ChargeRow.charge_id) == charge_id).with_for_update()
            )
        ).first()
        if row is None:
            raise NotFound("charge", charge_id)
        if row.state not in TRANSITIONS[target]:
            raise _refusal(row.state, target)
        now = datetime.now(UTC)
        event = ChargeEventRow(
            charge_id=charge_id,
            sequence=row.revision + 1,
            from_state=row.state,
            to_state=target,
            reason=reason,
            actor_role=actor.role,
            actor_id=actor.subject,
            event_time=now,
        )
        row.state = target
        row.update_time = now
        row.revision = event.sequence
        if target == VOIDED:
            row.void_reason = reason
        session.add(row)
        session.add(event)
        await session.flush()
        return (await _with_history(session, self.cipher, [row]))[0]
