"""The hash-chained audit trail: its documented form, concurrent appends, and tampering
with the database directly (edited, deleted, reordered, rewritten, cut off) caught by
VerifyAuditTrail and by `telemesh audit verify`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, text

from telemesh.consent.v1 import consent_pb2 as P
from tests.support.consent_api import (
    RECORDING,
    ConsentApi,
    consent_api,
    consent_database,
    new_patient,
)
from tests.support.errors import refused
from tests.support.harness import REPO, Stack

GENESIS = "0" * 64


def documented_hash(previous_hash: str, entry: P.AuditEntry) -> str:
    """SHA-256 over the previous hash and the canonical JSON, as the contract documents."""
    fields = {
        "sequence": entry.sequence,
        "entry_time": entry.entry_time.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "action": entry.action,
        "actor_id": entry.actor_id,
        "actor_role": entry.actor_role,
        "patient_id": entry.patient_id,
        "category": entry.category,
        "consent_id": entry.consent_id,
        "consent_version": entry.consent_version,
        "outcome": entry.outcome,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((previous_hash + canonical).encode()).hexdigest()


async def make_history(api: ConsentApi) -> None:
    patient = new_patient()
    consent = await api.grant(patient)
    await api.check(patient)
    await api.revoke(consent)
    await api.check(patient)
    await refused(api.revoke(consent))


async def test_every_entry_chains_to_the_one_before(consent_stack: Stack) -> None:
    async with consent_api(consent_stack) as api:
        await make_history(api)
        entries = await api.audit()
        previous = GENESIS
        for number, entry in enumerate(entries, start=1):
            assert entry.sequence == number
            assert entry.previous_hash == previous
            assert entry.entry_hash == documented_hash(previous, entry)
            previous = entry.entry_hash
        verdict = await api.verify()
        assert verdict.intact
        assert verdict.entries_checked == len(entries)


async def test_concurrent_writers_never_fork_the_chain(consent_stack: Stack) -> None:
    patients = [new_patient() for _ in range(6)]
    async with consent_api(consent_stack) as api:
        before = len(await api.audit())
        await asyncio.gather(
            *(api.grant(p) for p in patients),
            *(api.grant(p, RECORDING) for p in patients),
            *(api.check(p) for p in patients for _ in range(5)),
        )
        entries = await api.audit()
        assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
        assert len(entries) == before + 6 * 2 + 6 * 5
        verdict = await api.verify()
        assert verdict.intact


# --- tampering ---------------------------------------------------------------------


def _row(db: Connection, sequence: int) -> dict[str, Any]:
    row = db.execute(text("SELECT * FROM audit_entries WHERE sequence = :s"), {"s": sequence}).one()
    return dict(row._mapping)


def _swap(db: Connection, first: int, second: int) -> None:
    for old, new in ((first, -1), (second, first), (-1, second)):
        db.execute(
            text("UPDATE audit_entries SET sequence = :new WHERE sequence = :old"),
            {"new": new, "old": old},
        )


def _insert(db: Connection, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    db.execute(text(f"INSERT INTO audit_entries ({columns}) VALUES ({values})"), row)


def _set(db: Connection, sequence: int, **values: Any) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    db.execute(
        text(f"UPDATE audit_entries SET {assignments} WHERE sequence = :sequence"),
        {**values, "sequence": sequence},
    )


@contextmanager
def tampered(stack: Stack, kind: str, sequence: int, forged_hash: str = "") -> Iterator[None]:
    """Tampers with entry `sequence` in the database itself; undoes it afterwards."""
    engine = consent_database(stack)
    try:
        with engine.begin() as db:
            original = _row(db, sequence)
            if kind == "edited":
                _set(db, sequence, outcome="permit", actor_id="someone-else")
            elif kind in ("deleted", "cut_off"):
                db.execute(text("DELETE FROM audit_entries WHERE sequence = :s"), {"s": sequence})
            elif kind == "reordered":
                _swap(db, sequence, sequence + 1)
            elif kind == "rewritten":
                # Edited, with its hash recomputed to match: the next entry still tells.
                _set(db, sequence, outcome="tampered", entry_hash=forged_hash)
        yield
    finally:
        with engine.begin() as db:
            if kind == "reordered":
                _swap(db, sequence, sequence + 1)
            elif kind in ("deleted", "cut_off"):
                _insert(db, original)
            else:
                _set(db, sequence, **{k: v for k, v in original.items() if k != "sequence"})
        engine.dispose()


TAMPERING = [
    # kind, which entry (the one verify must name), expected problem
    ("edited", "middle", P.AUDIT_PROBLEM_EDITED),
    ("deleted", "middle", P.AUDIT_PROBLEM_DELETED),
    ("reordered", "middle", P.AUDIT_PROBLEM_REORDERED),
    ("rewritten", "middle", P.AUDIT_PROBLEM_EDITED),
    ("cut_off", "last", P.AUDIT_PROBLEM_DELETED),
]


@pytest.mark.parametrize(("kind", "which", "problem"), TAMPERING, ids=[t[0] for t in TAMPERING])
async def test_tampering_is_caught_and_the_first_bad_entry_named(
    consent_stack: Stack, kind: str, which: str, problem: int
) -> None:
    async with consent_api(consent_stack) as api:
        await make_history(api)
        entries = await api.audit()
        target = entries[-1].sequence if which == "last" else len(entries) // 2
        forged = P.AuditEntry()
        forged.CopyFrom(entries[target - 1])
        forged.outcome = "tampered"
        forged_hash = documented_hash(forged.previous_hash, forged)
        with tampered(consent_stack, kind, target, forged_hash):
            verdict = await api.verify()
            assert not verdict.intact
            assert verdict.problem == problem, verdict
            assert verdict.first_bad_sequence == target, verdict
            assert verdict.entries_checked == target - 1
            assert str(target) in verdict.detail
        assert (await api.verify()).intact


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))}
    env.update(TELEMESH_HOME=str(stack.home), TELEMESH_CONSENT_ADDR=stack.addresses["consent"])
    return subprocess.run(
        [sys.executable, "-m", "telemesh_tools.cli.main", "audit", "verify", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_audit_verify_command(consent_stack: Stack) -> None:
    async with consent_api(consent_stack) as api:
        await make_history(api)
        target = len(await api.audit()) // 2
    database = consent_stack["consent"].env["TELEMESH_DATABASE_URL"]
    intact = await asyncio.to_thread(_cli, consent_stack)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact" in intact.stdout
    with tampered(consent_stack, "edited", target):
        # Through the service, and on the database directly.
        runs = await asyncio.gather(
            asyncio.to_thread(_cli, consent_stack),
            asyncio.to_thread(_cli, consent_stack, "--database", database),
        )
        for broken in runs:
            assert broken.returncode == 1, broken.stdout + broken.stderr
            assert f"BROKEN at entry {target}: edited" in broken.stdout
