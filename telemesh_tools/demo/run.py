"""`telemesh demo`: one whole video visit on this machine, through the real mesh.

It starts the stack with `telemesh up` (services behind their Envoy sidecars, the edge,
the local trace receiver), then plays both sides of a visit through the edge, as the
apps would: a clinician publishes hours, a patient books, consents and checks in, two
aiortc peers join the visit's room through signaling, the clinician admits the patient,
media flows, both report call quality, the clinician completes the visit with a
diagnosis, and the billing service charges it. It prints each step with its timing, a
summary, and the visit's trace waterfall; then it stops everything.

Billing runs on the demonstration rule set (telemesh_tools/demo/demo-coding-rules.yaml: one
connected second counts as a minute), so a short call codes like a real visit; the
charge names that rule set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.config import RuntimeSettings, load, setting
from telemesh.identity.tokens import DevIssuer
from telemesh.signaling.v1 import signaling_pb2_grpc
from telemesh.telemetry import setup_telemetry
from telemesh_tools.cli.trace_cmd import visit_trace
from telemesh_tools.demo.steps import Visit, VisitSteps
from telemesh_tools.stack.endpoints import start_up
from telemesh_tools.stack.process import ManagedProcess
from telemesh_tools.tracestore.receiver import ReceiverSettings, store_path
from telemesh_tools.tracestore.waterfall import text as waterfall_text

T = TypeVar("T")
DEMO_RULES = Path(__file__).resolve().parent / "demo-coding-rules.yaml"
CALL_SECONDS = 16.0  # on the demo clock: 16 "minutes" of a new patient's visit


@dataclass(frozen=True)
class DemoPatient:
    """The demo patient's profile (PHI: it must never show in logs or traces)."""

    display_name: str = setting(
        "TELEMESH_DEMO_PATIENT_NAME", "Demo Patient", "Demo patient's name."
    )
    birth_date: str = setting("TELEMESH_DEMO_PATIENT_BIRTH_DATE", "1984-05-06", "Their birth date.")
    email: str = setting("TELEMESH_DEMO_PATIENT_EMAIL", "demo.patient@example.org", "Their email.")
    phone: str = setting("TELEMESH_DEMO_PATIENT_PHONE", "+1 555 0142", "Their phone number.")


@dataclass
class Summary:
    visit_id: str
    trace_id: str
    connected_seconds: int
    procedure_code: str
    modifiers: list[str]
    place_of_service: str
    amount: str
    rule_set: str


class Progress:
    """Prints each step as it starts and ends, with its duration."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.started = time.perf_counter()

    async def step(self, title: str, work: Awaitable[T]) -> T:
        began = time.perf_counter()
        self.out(f"  ... {title}")
        result = await work
        self.out(f"  ok  {title}  ({time.perf_counter() - began:.2f} s)")
        return result


def start_stack(home: Path, log: Path) -> tuple[ManagedProcess, dict[str, Any]]:
    """`telemesh up` in `home`, waited for until it wrote its endpoints."""
    env = {
        **os.environ,
        "TELEMESH_ICE_LOOPBACK": "1",  # this machine may have nothing but loopback
        "TELEMESH_BILLING_RULES_FILE": str(DEMO_RULES),
        "TELEMESH_BILLING_RULE_SET": "medicare-em-demo",
        "OTEL_BSP_SCHEDULE_DELAY": "500",  # spans reach the local store within a second
    }
    return start_up(home, env, log)


def edge_channel_factory(endpoints: dict[str, Any]) -> Callable[[str], grpc.aio.Channel]:
    """Every service through the edge: gRPC over TLS, trusting the local CA."""
    address = str(endpoints["edge"]["address"])
    credentials = grpc.ssl_channel_credentials(Path(str(endpoints["ca_bundle"])).read_bytes())
    options = [
        ("grpc.ssl_target_name_override", "localhost"),  # the edge's certificate names it
        ("grpc.initial_reconnect_backoff_ms", 100),
    ]

    def channel(_service: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(address, credentials, options=options)

    return channel


async def _charge_of(
    billing: billing_pb2_grpc.BillingServiceAsyncStub, visit: Visit, seconds: float = 30
) -> billing_pb2.Charge:
    deadline = time.monotonic() + seconds
    while True:
        reply = await billing.ListCharges(
            billing_pb2.ListChargesRequest(patient_id=visit.patient_id, visit_id=visit.visit_id),
            metadata=visit.patient,
        )
        if reply.charges:
            return reply.charges[0]
        if time.monotonic() > deadline:
            raise TimeoutError("the visit was not charged within 30 s")
        await asyncio.sleep(0.25)


async def play_visit(
    steps: VisitSteps, progress: Progress, call_seconds: float = CALL_SECONDS
) -> Summary:
    """Both sides of one visit, through whatever channels `steps` uses."""
    from telemesh_tools.peer.call_peer import CallPeer  # aiortc loads only when a call starts

    patient_profile = load(DemoPatient)
    visit = await progress.step(
        "clinician publishes hours; patient signs up and books the next slot",
        steps.book(**dataclasses.asdict(patient_profile)),
    )
    progress.out(f"      visit {visit.visit_id} at {visit.start_time:%H:%M} UTC")
    await progress.step("patient consents to telehealth", steps.grant_telehealth(visit))
    await progress.step("patient checks in from home (waiting room)", steps.check_in(visit))
    signaling = signaling_pb2_grpc.SignalingServiceStub(steps.channel("signaling"))
    patient = CallPeer(
        signaling, visit.patient, await steps.join_token(visit, "patient"), label="patient"
    )
    clinician = CallPeer(
        signaling, visit.clinician, await steps.join_token(visit, "clinician"), label="clinician"
    )
    try:

        async def connect() -> None:
            await patient.join()
            await clinician.join()
            await clinician.admit()
            for peer in (patient, clinician):
                await peer.wait_connected(30)
                await peer.wait_frames(10, seconds=30)

        await progress.step("both join the room; the clinician admits; WebRTC connects", connect())
        await progress.step(
            f"the call runs ({call_seconds:.0f} s of real media)", asyncio.sleep(call_seconds)
        )

        async def quality() -> None:
            for peer in (patient, clinician):
                measured = await peer.report_quality()
                progress.out(
                    f"      {peer.label}: rtt {measured.round_trip_time_ms:.1f} ms, "
                    f"loss {measured.fraction_lost:.3f}, frames {measured.frames_received}"
                )

        await progress.step("both report call quality", quality())
        done = await progress.step(
            "clinician completes the visit (J06.9)", steps.complete(visit, codes=("J06.9",))
        )
    finally:
        await patient.close()
        await clinician.close()
    billing = billing_pb2_grpc.BillingServiceStub(steps.channel("billing"))
    charge = await progress.step("billing charges the visit", _charge_of(billing, visit))
    amount = f"{charge.amount.amount_minor / 100:.2f} {charge.amount.currency_code}"
    return Summary(
        visit_id=visit.visit_id,
        trace_id=visit.traceparent.split("-")[1],
        connected_seconds=done.connected_seconds,
        procedure_code=charge.procedure_code or "(not billable)",
        modifiers=list(charge.modifiers),
        place_of_service=charge.place_of_service,
        amount=amount,
        rule_set=charge.rule_set,
    )


def print_summary(summary: Summary, out: Callable[[str], None]) -> None:
    out("")
    out("Summary")
    out(f"  visit             {summary.visit_id}")
    out(f"  trace             {summary.trace_id}")
    out(f"  connected seconds {summary.connected_seconds}")
    out(f"  code              {summary.procedure_code}")
    out(f"  modifiers         {', '.join(summary.modifiers) or 'none'}")
    out(f"  place of service  {summary.place_of_service}")
    out(f"  amount            {summary.amount}")
    out(f"  rule set          {summary.rule_set}")


def _fresh(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)


async def demo(home: Path, out: Callable[[str], None] = print) -> Summary:
    """Runs the whole demo in `home` (emptied first); everything is stopped at the end."""
    await asyncio.to_thread(_fresh, home)
    # The demo's own peers gather loopback candidates too (a loopback-only machine).
    os.environ.setdefault("TELEMESH_ICE_LOOPBACK", "1")
    progress = Progress(out)
    out(f"Telemesh demo in {home}")
    up, endpoints = await progress.step(
        "start the stack (telemesh up)", asyncio.to_thread(start_stack, home, home / "up.log")
    )
    telemetry = None
    try:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = str(endpoints["trace_receiver"])
        telemetry = setup_telemetry("peers")  # the demo's two peers report their spans too
        steps = VisitSteps(edge_channel_factory(endpoints), DevIssuer(home))
        try:
            summary = await play_visit(steps, progress)
        finally:
            await steps.close()
        telemetry.tracer_provider.force_flush()
        await asyncio.sleep(1.0)  # the Envoys flush their spans every half second
    finally:
        await progress.step("stop the stack", asyncio.to_thread(up.stop, 60))
        if telemetry is not None:
            telemetry.shutdown()
    print_summary(summary, out)
    store = store_path(RuntimeSettings(home=home), load(ReceiverSettings))
    spans, title = visit_trace(store, summary.visit_id, summary.trace_id)
    out("")
    out(waterfall_text(spans, title))
    out(f"\n(done in {time.perf_counter() - progress.started:.1f} s; nothing left running)")
    return summary
