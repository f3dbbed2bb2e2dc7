"""A whole visit through an edge Envoy in front of the containers: the demo's steps
(telemesh_tools.demo.run.play_visit) through the local mesh, whose four services run
from the image (tests/containers/stack.py), each on its own fresh PostgreSQL database.
The visit is booked, consented, checked in, called over WebRTC, completed, and charged
on the demonstration rule set."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from telemesh.config import RuntimeSettings
from telemesh.identity.tokens import DevIssuer
from telemesh_tools.demo.run import DEMO_RULES, Progress, Summary, edge_channel_factory, play_visit
from telemesh_tools.demo.steps import VisitSteps
from telemesh_tools.mesh.settings import MeshSettings
from tests.containers import podman
from tests.containers.stack import ContainerMesh

# Whichever test runs first also builds the image (on a fresh machine: debootstrap, and
# pip downloading every wheel), which can take longer than the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RULES_IN_CONTAINER = "/etc/telemesh/billing/demo-coding-rules.yaml"


def test_a_whole_visit_through_the_edge_in_front_of_the_containers_completes_and_bills(
    image: podman.BuiltImage,
    databases: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # This machine may have nothing but loopback: the test's two peers and the
    # signaling service gather loopback candidates (as `telemesh demo` does).
    monkeypatch.setenv("TELEMESH_ICE_LOOPBACK", "1")
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    mesh = ContainerMesh(
        home,
        RuntimeSettings(home=home),
        MeshSettings(edge_port=0),
        image=image.id,
        databases=databases,
        mounts=[(DEMO_RULES, RULES_IN_CONTAINER, "ro")],
        service_env={
            "TELEMESH_ICE_LOOPBACK": "1",
            "TELEMESH_BILLING_RULES_FILE": RULES_IN_CONTAINER,
            "TELEMESH_BILLING_RULE_SET": "medicare-em-demo",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        },
    )
    lines: list[str] = []

    async def visit() -> Summary:
        steps = VisitSteps(edge_channel_factory(mesh.endpoints()), DevIssuer(home))
        try:
            return await play_visit(steps, Progress(lines.append))
        finally:
            await steps.close()

    try:
        mesh.start(timeout=120)
        summary = asyncio.run(visit())
        assert not mesh.exited(), "every Envoy and container still runs"
    except BaseException:
        logs = "\n".join(f"--- {p.name}\n{p.logs()[-3000:]}" for p in mesh.all_processes())
        print("\n".join(lines), logs, sep="\n")
        raise
    finally:
        mesh.stop()
    # New patient, at home, the demo clock: at least 15 "minutes" of connected call.
    assert summary.procedure_code in {"99202", "99203", "99204", "99205"}, summary
    assert summary.place_of_service == "10"
    assert summary.rule_set.startswith("medicare-em-demo")
    assert summary.connected_seconds > 0
