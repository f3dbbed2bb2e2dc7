"""Diagnosis codes are never at rest in the clear: not in the session or billing
databases, not in the outbox, not in idempotency records; rotation re-seals them and
the old keys can go; plaintext left by an earlier version is sealed at start."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.db import sync_url
from telemesh.session.v1 import session_pb2
from tests.support.billing import completion
from tests.support.dumps import dump_service_database
from tests.support.flows import Flows, Visit, rid
from tests.support.harness import REPO, Stack

NEW_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
SERVICES = ("session", "consent", "billing")


def _codes() -> tuple[str, str]:
    """Two valid ICD-10-CM codes no other test uses (base64 ciphertext never holds '.')."""
    digits = f"{secrets.randbelow(10**4):04d}"
    return f"Q{digits[:2]}.{digits[2:]}", f"T{digits[2:]}.{digits[:2]}X"


def _url(stack: Stack, service: str) -> str:
    return stack[service].env["TELEMESH_DATABASE_URL"]


def _rows(stack: Stack, service: str, query: str) -> list[Any]:
    engine = create_engine(sync_url(_url(stack, service)))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query)).all())
    finally:
        engine.dispose()


def _execute(stack: Stack, service: str, statement: str, **params: Any) -> None:
    engine = create_engine(sync_url(_url(stack, service)))
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def _as_text(value: Any) -> str:
    return bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)


async def _charge(stack: Stack, visit_id: str) -> billing_pb2.Charge:
    """The visit's charge once the outbox has carried the completion to billing."""
    async with stack.channel("billing") as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        staff = stack.tokens.role("billing", "biller-1")
        for _ in range(300):
            reply = await stub.ListCharges(
                billing_pb2.ListChargesRequest(visit_id=visit_id), metadata=staff, timeout=30
            )
            if reply.charges:
                return reply.charges[0]
            await asyncio.sleep(0.1)
    raise AssertionError("the completion never reached billing")


async def _complete_and_bill(stack: Stack, codes: tuple[str, ...]) -> tuple[Visit, str]:
    """A whole visit to its charge; returns the visit and the CompleteVisit request id."""
    flows = Flows(stack)
    try:
        visit = await flows.ready_visit()
        await flows.admit(visit)
        request_id = rid()
        await flows.session.CompleteVisit(
            session_pb2.CompleteVisitRequest(
                request_id=request_id, visit_id=visit.visit_id, diagnosis_codes=codes
            ),
            metadata=visit.clinician,
        )
    finally:
        await flows.close()
    charge = await _charge(stack, visit.visit_id)
    assert tuple(charge.diagnosis_codes) == codes
    # A billable charge (as if a longer call) marked billed: an idempotent answer that
    # holds codes.
    async with stack.channel("billing") as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        recorded = await stub.RecordVisitCompletion(
            completion(diagnosis_codes=list(codes)),
            metadata=stack.tokens.service("session"),
            timeout=30,
        )
        await stub.MarkChargeBilled(
            billing_pb2.MarkChargeBilledRequest(
                request_id=rid(), charge_id=recorded.charge.charge_id
            ),
            metadata=stack.tokens.role("billing", "biller-1"),
            timeout=30,
        )
    return visit, request_id


async def _read_back(stack: Stack, visit: Visit, request_id: str, codes: tuple[str, ...]) -> None:
    """The API still answers with the codes: the visit, its charge, a replay."""
    flows = Flows(stack)
    try:
        got = await flows.session.GetVisit(
            session_pb2.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.clinician
        )
        assert tuple(got.visit.diagnosis_codes) == codes
        replay = await flows.session.CompleteVisit(
            session_pb2.CompleteVisitRequest(
                request_id=request_id, visit_id=visit.visit_id, diagnosis_codes=codes
            ),
            metadata=visit.clinician,
        )
        assert tuple(replay.visit.diagnosis_codes) == codes, "the stored answer opens"
    finally:
        await flows.close()
    assert tuple((await _charge(stack, visit.visit_id)).diagnosis_codes) == codes


def _sealed_values(stack: Stack) -> list[str]:
    """Every value that must be sealed, from both databases."""
    session = _rows(
        stack,
        "session",
        "select diagnosis_codes_enc from visits where diagnosis_codes_enc != ''",
    )
    session += _rows(
        stack,
        "session",
        "select response from idempotency_records where method = 'CompleteVisit'",
    )
    session += _rows(
        stack,
        "session",
        "select request_digest from idempotency_records where method = 'CompleteVisit'",
    )
    session += _rows(
        stack,
        "session",
        "select payload from outbox_events where method like '%RecordVisitCompletion'",
    )
    billing = _rows(stack, "billing", "select diagnosis_codes_enc, completion_digest from charges")
    billing += _rows(
        stack,
        "billing",
        "select response, request_digest from idempotency_records "
        "where method = 'MarkChargeBilled'",
    )
    values = [_as_text(value) for row in session + billing for value in row]
    assert len(values) >= 8, "every kind of sealed value is there"
    return values


def _rotate(stack: Stack, service: str, keys: str) -> None:
    env = {**stack[service].env, f"TELEMESH_{service.upper()}_PHI_KEYS": keys}
    done = subprocess.run(
        [sys.executable, "-m", f"svc_{service}.phi_rotation"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "re-encrypted" in done.stdout


def _old_key(home: Path, service: str) -> str:
    data = json.loads((home / service / "phi-keys.json").read_text())
    return f"{data['active']}:{data['keys'][data['active']]}"


def _restart(stack: Stack, service: str, keys: str) -> None:
    stack[service].stop()
    stack[service].env[f"TELEMESH_{service.upper()}_PHI_KEYS"] = keys
    stack[service].start().wait_ready()


async def test_no_diagnosis_code_in_the_clear_and_rotation_drops_the_old_key(
    make_stack: Callable[..., Stack], backend: str, home: Path
) -> None:
    codes = _codes()
    stack = make_stack(backend, *SERVICES)
    visit, request_id = await _complete_and_bill(stack, codes)

    for service in ("session", "billing"):
        dump = dump_service_database(stack, service)
        assert visit.visit_id in dump, "the dump is real: it holds the visit's id"
        for code in codes:
            assert code not in dump, f"{code} is readable in the {service} database"
    before = _sealed_values(stack)
    assert all(value.startswith("v1:") for value in before), "every PHI value is sealed"
    for code in codes:
        assert code not in stack.logs(), "no code in the logs"

    # Rotation: the new key first, the pass, then the old key is dropped.
    for service in ("session", "billing"):
        stack[service].stop()
        _rotate(stack, service, f"k-new:{NEW_KEY},{_old_key(home, service)}")
    assert all(value.startswith("v1:k-new:") for value in _sealed_values(stack))
    for service in ("session", "billing"):
        _restart(stack, service, f"k-new:{NEW_KEY}")
    await _read_back(stack, visit, request_id, codes)


async def test_plaintext_from_before_is_sealed_at_start(
    make_stack: Callable[..., Stack], backend: str
) -> None:
    """Rows written in the clear (as before the sealing migrations) are sealed by the
    service at start, and read back."""
    codes = _codes()
    stack = make_stack(backend, *SERVICES)
    visit, request_id = await _complete_and_bill(stack, codes)
    for service in ("session", "billing"):
        stack[service].stop()
    # What the earlier versions stored: the codes, plain.
    _execute(
        stack,
        "session",
        "update visits set diagnosis_codes_enc = :codes where visit_id = :visit",
        codes=",".join(codes),
        visit=visit.visit_id,
    )
    _execute(
        stack,
        "billing",
        "update charges set diagnosis_codes_enc = :codes where visit_id = :visit",
        codes=json.dumps(list(codes)),
        visit=visit.visit_id,
    )
    assert not all(value.startswith("v1:") for value in _sealed_values(stack)), "plain now"
    for service in ("session", "billing"):
        stack[service].start().wait_ready()
    assert all(value.startswith("v1:") for value in _sealed_values(stack))
    assert "PHI found in the clear, now sealed" in stack.logs()
    await _read_back(stack, visit, request_id, codes)
