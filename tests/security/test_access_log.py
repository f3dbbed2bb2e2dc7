"""The HIPAA access log (issue 12): who reads it, that it is hash-chained as the contract
documents, that tampering is named by VerifyAccessLog and `telemesh audit verify --log
access`, and that an access which cannot be logged is not served (fail closed)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import create_engine, text

from telemesh.consent.v1 import consent_pb2 as C
from telemesh.db import sync_url
from telemesh.errors import reason_of
from telemesh.hash_chain import ChainProblem
from telemesh.session.v1 import session_pb2 as S
from telemesh.timestamps import timestamp
from tests.support.consent_api import ConsentApi
from tests.support.errors import bad_fields, refused
from tests.support.flows import rid
from tests.support.harness import REPO, Stack

DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def log_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("access-log"), request.param, {})
    try:
        stack.start("session", "consent")
        yield stack
    finally:
        stack.close()


@pytest.fixture
async def api(log_stack: Stack) -> AsyncIterator[ConsentApi]:
    async with log_stack.channel("consent") as channel:
        api = ConsentApi(log_stack, channel)
        try:
            yield api
        finally:
            await api.flows.close()


def _instant(value: Timestamp) -> str:
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def documented_hash(entry: S.AccessLogEntry) -> str:
    """The entry's hash as the contract's comment on AccessLogEntry.entry_hash says."""
    access = entry.access
    content = {
        "sequence": entry.sequence,
        "entry_time": _instant(entry.entry_time),
        "access_id": access.access_id,
        "access_time": _instant(access.access_time),
        "patient_id": access.patient_id,
        "actor_id": access.actor_id,
        "actor_role": access.actor_role,
        "service": access.service,
        "method": access.method,
        "outcome": int(access.outcome),
        "basis": access.basis,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((entry.previous_hash + canonical).encode()).hexdigest()


async def history(api: ConsentApi) -> tuple[str, list[S.AccessLogEntry]]:
    """A patient whose record a treating clinician and a stranger reached; their log."""
    patient = f"p-{uuid.uuid4().hex[:10]}"
    _, clinician = await api.treating_clinician(patient)
    await api.grant(patient)
    await api.stub.ListConsents(C.ListConsentsRequest(patient_id=patient), metadata=clinician)
    stranger = api.tokens.clinician(f"c-{uuid.uuid4().hex[:8]}")
    await refused(
        api.flows.session.GetPatient(S.GetPatientRequest(patient_id=patient), metadata=stranger)
    )
    return patient, await entries_of(api, patient)


async def entries_of(api: ConsentApi, patient: str, page_size: int = 3) -> list[S.AccessLogEntry]:
    entries: list[S.AccessLogEntry] = []
    token = ""
    while True:
        page = await api.flows.session.ListPatientAccess(
            S.ListPatientAccessRequest(patient_id=patient, page_size=page_size, page_token=token),
            metadata=api.tokens.patient(patient),
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries


async def test_the_patient_reads_their_log_and_nobody_else_but_an_admin(api: ConsentApi) -> None:
    patient, entries = await history(api)
    methods = {(e.access.service, e.access.method.rsplit("/", 1)[-1]) for e in entries}
    assert {("consent", "GrantConsent"), ("consent", "ListConsents")} <= methods
    assert ("session", "GetPatient") in methods
    assert [e.sequence for e in entries] == sorted((e.sequence for e in entries), reverse=True)
    assert len({e.sequence for e in entries}) == len(entries)
    tokens = api.tokens
    _, treating = await api.treating_clinician(patient)
    for caller in (
        tokens.patient(f"p-{uuid.uuid4().hex[:10]}"),
        treating,
        tokens.role("billing", "clerk-1"),
        tokens.role("partner", "clinic-a"),
        tokens.service("consent"),
    ):
        error = await refused(
            api.flows.session.ListPatientAccess(
                S.ListPatientAccessRequest(patient_id=patient), metadata=caller
            )
        )
        assert error.code() == DENIED
    by_admin = await api.flows.session.ListPatientAccess(
        S.ListPatientAccessRequest(patient_id=patient, page_size=500), metadata=api.admin
    )
    assert {e.sequence for e in by_admin.entries} >= {e.sequence for e in entries}
    forged = await refused(
        api.flows.session.ListPatientAccess(
            S.ListPatientAccessRequest(patient_id=patient, page_token="eyJiZWZvcmUiOjF9"),
            metadata=tokens.patient(patient),
        )
    )
    assert bad_fields(forged) == {"page_token"}


async def test_entries_chain_as_the_contract_documents(api: ConsentApi) -> None:
    _, entries = await history(api)
    for entry in entries:
        assert documented_hash(entry) == entry.entry_hash, entry
    verdict = await api.flows.session.VerifyAccessLog(
        S.VerifyAccessLogRequest(), metadata=api.admin
    )
    assert verdict.intact, verdict
    assert verdict.entries_checked >= len(entries)


async def test_only_serving_services_report_accesses_and_only_as_themselves(
    api: ConsentApi, log_stack: Stack
) -> None:
    patient = f"p-{uuid.uuid4().hex[:10]}"
    access = S.PatientAccess(
        access_id=str(uuid.uuid4()),
        access_time=timestamp(datetime.now(UTC)),
        patient_id=patient,
        actor_id="c-1",
        actor_role="clinician",
        service="billing",
        method="/telemesh.billing.v1.BillingService/ListCharges",
        outcome=S.ACCESS_OUTCOME_ALLOWED,
        basis="care_relationship",
    )
    session = api.flows.session

    async def record(caller: tuple[tuple[str, str], ...]) -> S.RecordPatientAccessResponse:
        return await session.RecordPatientAccess(
            S.RecordPatientAccessRequest(request_id=rid(), accesses=[access]),
            metadata=caller,
        )

    tokens = log_stack.tokens
    for caller in (tokens.patient(patient), tokens.role("admin", "a-1")):
        assert (await refused(record(caller))).code() == DENIED
    # The consent service may not speak for billing.
    error = await refused(record(tokens.service("consent")))
    assert bad_fields(error) == {"accesses[0].service"}
    assert (await record(tokens.service("billing"))).recorded_count == 1
    # A redelivery (another request, the same access) changes nothing.
    assert (await record(tokens.service("billing"))).recorded_count == 0
    assert [e.access.access_id for e in await entries_of(api, patient)] == [access.access_id]


# --- tampering ---------------------------------------------------------------------


@contextmanager
def tampered(stack: Stack, kind: str, sequence: int) -> Iterator[None]:
    """Edits or deletes entry `sequence` in the session database; undoes it afterwards."""
    engine = create_engine(sync_url(stack["session"].env["TELEMESH_DATABASE_URL"]))
    where = {"s": sequence}
    try:
        with engine.begin() as db:
            original = dict(
                db.execute(text("SELECT * FROM access_log_entries WHERE sequence = :s"), where)
                .one()
                ._mapping
            )
            if kind == "edited":  # hide who looked
                db.execute(
                    text("UPDATE access_log_entries SET actor_id = 'nobody' WHERE sequence = :s"),
                    where,
                )
            else:
                db.execute(text("DELETE FROM access_log_entries WHERE sequence = :s"), where)
        yield
    finally:
        with engine.begin() as db:
            db.execute(text("DELETE FROM access_log_entries WHERE sequence = :s"), where)
            columns = ", ".join(original)
            values = ", ".join(f":{name}" for name in original)
            db.execute(
                text(f"INSERT INTO access_log_entries ({columns}) VALUES ({values})"), original
            )
        engine.dispose()


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))}
    env.update(TELEMESH_HOME=str(stack.home), TELEMESH_SESSION_ADDR=stack.addresses["session"])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "telemesh_tools.cli.main",
            "audit",
            "verify",
            "--log",
            "access",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("edited", S.ACCESS_LOG_PROBLEM_EDITED), ("deleted", S.ACCESS_LOG_PROBLEM_DELETED)],
)
async def test_tampering_is_named_by_the_service_and_the_command(
    api: ConsentApi, log_stack: Stack, kind: str, problem: int
) -> None:
    _, entries = await history(api)
    target = entries[len(entries) // 2].sequence
    session = api.flows.session
    database = log_stack["session"].env["TELEMESH_DATABASE_URL"]
    with tampered(log_stack, kind, target):
        verdict = await session.VerifyAccessLog(S.VerifyAccessLogRequest(), metadata=api.admin)
        assert (verdict.intact, verdict.problem, verdict.first_bad_sequence) == (
            False,
            problem,
            target,
        ), verdict
        runs = await asyncio.gather(
            asyncio.to_thread(_cli, log_stack),
            asyncio.to_thread(_cli, log_stack, "--database", database),
        )
        for broken in runs:
            assert broken.returncode == 1, broken.stdout + broken.stderr
            assert f"access log BROKEN at entry {target}: {kind}" in broken.stdout
    intact = await asyncio.to_thread(_cli, log_stack)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "access log intact" in intact.stdout
    for caller in (api.tokens.patient("p-1"), api.tokens.clinician("c-1")):
        error = await refused(session.VerifyAccessLog(S.VerifyAccessLogRequest(), metadata=caller))
        assert error.code() == DENIED


async def test_an_access_that_cannot_be_logged_is_not_served(
    make_stack: Callable[..., Stack],
) -> None:
    """The session service (which keeps the log) down: the consent service serves no
    patient's record (UNAVAILABLE), and refuses what it would refuse anyway."""
    stack = make_stack("sqlite", "session", "consent")
    async with stack.channel("consent") as channel:
        api = ConsentApi(stack, channel)
        try:
            patient = f"p-{uuid.uuid4().hex[:10]}"
            await api.grant(patient)
            stack["session"].kill()
            listing = api.stub.ListConsents(
                C.ListConsentsRequest(patient_id=patient), metadata=api.tokens.patient(patient)
            )
            error = await refused(listing)
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            other = await refused(
                api.stub.ListConsents(
                    C.ListConsentsRequest(patient_id=patient),
                    metadata=api.tokens.patient("p-someone-else"),
                )
            )
            assert (other.code(), reason_of(other)) == (DENIED, "NOT_OWNER")
        finally:
            await api.flows.close()


def test_both_logs_name_problems_with_the_chains_numbers() -> None:
    """One verifier answers VerifyAuditTrail and VerifyAccessLog: the contract's two
    problem enums must keep the numbers of telemesh.hash_chain.ChainProblem."""
    for problem in ChainProblem:
        suffix = "UNSPECIFIED" if problem is ChainProblem.NONE else problem.name
        assert S.AccessLogProblem.Value(f"ACCESS_LOG_PROBLEM_{suffix}") == int(problem)
        assert C.AuditProblem.Value(f"AUDIT_PROBLEM_{suffix}") == int(problem)
    assert len(S.AccessLogProblem.keys()) == len(C.AuditProblem.keys()) == len(ChainProblem)
