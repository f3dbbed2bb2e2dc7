"""CheckConsent: audited checks (each one appended to the hash chain before it answers)
against the no-op baseline, on SQLite, at 1 and 16 concurrent clients.

The aim is a p99 under 10 ms at 16 clients; on a small shared machine the baseline's own
p99 may already exceed that, so the ratios are the figures that carry over.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import grpc

from benchmarks.baseline import NoopTarget
from benchmarks.harness import Result, measure, python_process, row
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.identity.tokens import DevIssuer
from telemesh_tools.stack.process import free_port

PATIENTS = 200
CLIENTS = (1, 16)
AIM_P99_MS = 10.0


class ConsentTarget:
    """A consent service process (SQLite) with consents granted to `PATIENTS` patients."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.address = f"127.0.0.1:{free_port()}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))},
            "TELEMESH_HOME": str(home),
            "TELEMESH_LISTEN": self.address,
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
        self.process = python_process(
            "consent", "svc_consent", env, home / "consent.log", self.address
        )
        self.patients = [f"bench-p-{n}" for n in range(PATIENTS)]

    def __enter__(self) -> ConsentTarget:
        self.process.start().wait_ready()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.process.stop()

    async def seed(self) -> None:
        issuer = DevIssuer(self.home)
        text_sha256 = hashlib.sha256(b"benchmark consent text").hexdigest()
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            for patient in self.patients:
                await stub.GrantConsent(
                    consent_pb2.GrantConsentRequest(
                        request_id=str(uuid.uuid4()),
                        patient_id=patient,
                        category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH,
                        text_version="bench",
                        text_sha256=text_sha256,
                    ),
                    metadata=(("authorization", f"Bearer {issuer.mint(patient, 'patient')}"),),
                )

    async def measure(self, clients: int) -> Result:
        token = DevIssuer(self.home).mint("session", "service")
        metadata = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            requests = [
                consent_pb2.CheckConsentRequest(
                    patient_id=patient, category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH
                )
                for patient in self.patients
            ]

            async def call(client: int, n: int) -> None:
                reply = await stub.CheckConsent(
                    requests[(client * 31 + n) % len(requests)], metadata=metadata
                )
                if reply.decision != consent_pb2.DECISION_PERMIT:
                    raise AssertionError("a seeded consent did not permit")

            return await measure("CheckConsent (audited, SQLite)", call, clients)


async def run(home: Path) -> None:
    print("CheckConsent vs the no-op RPC baseline (one server process each, same run)")
    baselines: dict[int, Result] = {}
    with NoopTarget(home / "noop") as noop:
        for clients in CLIENTS:
            baselines[clients] = await noop.measure(clients)
            print(row(baselines[clients]))
    with ConsentTarget(home / "consent") as consent:
        await consent.seed()
        for clients in CLIENTS:
            result = await consent.measure(clients)
            base = baselines[clients]
            print(row(result, base))
            print(
                f"  {'':<38} p99 x{result.p99_ms / base.p99_ms:.2f} of baseline;"
                f" aim p99 < {AIM_P99_MS:.0f} ms at 16 clients"
            )
