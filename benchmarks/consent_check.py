"""CheckConsent: audited checks (each one appended to the hash chain before it answers)
against the no-op baseline, on SQLite and PostgreSQL, at 1 and 16 concurrent clients.

The consent service runs beside a session service (a grant needs the patient to exist
there); the checks themselves are answered by the consent service alone, as the session
and signaling services ask them. The aim is a p99 under 10 ms and at least half the
no-op floor's throughput at 16 clients. `TELEMESH_BENCH_BACKENDS=sqlite` narrows the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from benchmarks.baseline import NoopTarget
from benchmarks.harness import Result, measure, row
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from tests.support.flows import Flows, rid
from tests.support.harness import Stack

PATIENTS = 200
CLIENTS = (1, 16)
BACKENDS = tuple(os.environ.get("TELEMESH_BENCH_BACKENDS", "sqlite,postgres").split(","))
AIM_P99_MS = 10.0
AIM_RATIO = 0.5


async def _seed(stack: Stack) -> list[str]:
    """`PATIENTS` patients, each with an active telehealth consent."""
    flows = Flows(stack)
    text_sha256 = hashlib.sha256(b"benchmark consent text").hexdigest()
    patients = []
    try:
        for _ in range(PATIENTS):
            patient_id, md = await flows.patient()
            await flows.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    request_id=rid(),
                    patient_id=patient_id,
                    category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH,
                    text_version="bench",
                    text_sha256=text_sha256,
                ),
                metadata=md,
            )
            patients.append(patient_id)
    finally:
        await flows.close()
    return patients


async def _checks(stack: Stack, patients: list[str], clients: int, label: str) -> Result:
    metadata = stack.tokens.service("session")
    requests = [
        consent_pb2.CheckConsentRequest(
            patient_id=patient, category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH
        )
        for patient in patients
    ]
    async with stack.channel("consent") as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)

        async def call(client: int, n: int) -> None:
            reply = await stub.CheckConsent(
                requests[(client * 31 + n) % len(requests)], metadata=metadata
            )
            if reply.decision != consent_pb2.DECISION_PERMIT:
                raise AssertionError("a seeded consent did not permit")

        return await measure(f"CheckConsent (audited, {label})", call, clients)


async def run(home: Path) -> None:
    print("CheckConsent vs the no-op RPC baseline (one server process each, same run)")
    with NoopTarget(home / "noop") as noop:
        baselines = {clients: await noop.measure(clients) for clients in CLIENTS}
    for clients in CLIENTS:
        print(row(baselines[clients]))
    for backend in BACKENDS:
        (home / backend).mkdir()
        stack = Stack(home / backend, backend)
        with contextlib.closing(stack):
            stack.start("session", "consent")
            patients = await _seed(stack)
            for clients in CLIENTS:
                result = await _checks(stack, patients, clients, backend)
                base = baselines[clients]
                print(row(result, base))
                print(
                    f"  {'':<38} p99 x{result.p99_ms / base.p99_ms:.2f} of baseline's;"
                    f" aim at 16 clients: p99 < {AIM_P99_MS:.0f} ms,"
                    f" x{AIM_RATIO} of baseline or more"
                )
