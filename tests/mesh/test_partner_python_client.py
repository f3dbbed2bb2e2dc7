"""telemesh-client as a partner clinic gets it: the wheel built from clients/python (its
build hook copies gen/python's stubs in), installed into a fresh virtual environment that
holds nothing of the project, and used from there, outside the repository and with a
clean environment, against the running mesh through the edge with a partner token.

The patient's side is set up first through the edge (in this process): a profile, then
consents (sharing with the partner clinic, sharing with another clinic, telehealth). The
partner then runs examples/partner/python and a small script of its own: PERMIT for its
sharing consent, a listing of only that consent, PERMISSION_DENIED with reason
PARTNER_SCOPE for anything else, NOT_FOUND for an unknown consent, INVALID_ARGUMENT with
its field violation, and its traceparent in the mesh's traces. The client's own tests
(clients/python/tests: retries on UNAVAILABLE against an in-process server) and mypy
--strict on the example run in the same environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from telemesh_tools.tracestore.store import SpanStore
from tests.support.harness import REPO
from tests.support.mesh import MeshUnderTest

CLIENT = REPO / "clients" / "python"
EXAMPLE = REPO / "examples" / "partner" / "python" / "partner_flow.py"
# What the partner's checks need besides the wheel: the project's own pins (pip's cache).
TEST_DEPENDENCIES = ["pytest==9.2.0", "mypy==2.4.1"]
NOT_BUILT = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc")
TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"

# The partner's own code: every call through telemesh_client, results as JSON.
SCRIPT = """
import json, sys, uuid
from telemesh.consent.v1 import consent_pb2 as c
from telemesh_client import TelemeshClient, TelemeshError

edge, ca_file, token, clinic, patient, others, traceparent = sys.argv[1:8]

def refused(call):
    try:
        call()
    except TelemeshError as e:
        violations = [[v.field, v.description] for v in e.field_violations]
        return {"code": e.code.name, "reason": e.reason, "domain": e.domain, "fields": violations}
    return None

api = TelemeshClient.connect(edge, token=token, ca_file=ca_file, traceparent=lambda: traceparent)
with api:
    check = api.consent.CheckConsent(c.CheckConsentRequest(
        patient_id=patient, category=c.CONSENT_CATEGORY_PARTNER_SHARING, partner_clinic_id=clinic))
    listed = api.consent.ListConsents(c.ListConsentsRequest(patient_id=patient)).consents
    got = api.consent.GetConsent(c.GetConsentRequest(consent_id=check.consent.consent_id))
    print(json.dumps({
        "decision": c.Decision.Name(check.decision),
        "consent": check.consent.consent_id,
        "listed": [[x.consent_id, c.ConsentCategory.Name(x.category), x.partner_clinic_id]
                   for x in listed],
        "got": got.consent.consent_id,
        "telehealth": refused(lambda: api.consent.CheckConsent(c.CheckConsentRequest(
            patient_id=patient, category=c.CONSENT_CATEGORY_TELEHEALTH))),
        "others": [refused(lambda: api.consent.GetConsent(c.GetConsentRequest(consent_id=i)))
                   for i in others.split(",")],
        "unknown": refused(lambda: api.consent.GetConsent(
            c.GetConsentRequest(consent_id=str(uuid.uuid4())))),
        "malformed": refused(lambda: api.consent.GetConsent(
            c.GetConsentRequest(consent_id="not-a-uuid"))),
    }))
"""


def run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, (
        f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@dataclass
class PartnerVenv:
    """A virtual environment with the wheel (and its dependencies) only, and a working
    folder outside the repository."""

    python: Path
    folder: Path

    def env(self) -> dict[str, str]:
        """This environment without anything that points into the project."""
        drop = ("TELEMESH_", "OTEL_", "PYTHON", "VIRTUAL_ENV")
        return {k: v for k, v in os.environ.items() if not k.startswith(drop)}

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, *args],
            cwd=self.folder,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def build_wheel(scratch: Path) -> Path:
    """`pip wheel` of a copy of clients/python beside a copy of gen/python (the layout the
    build hook reads), so that nothing in the repository changes; offline: no build
    isolation, this venv's setuptools."""
    source = scratch / "source"
    shutil.copytree(CLIENT, source / "clients" / "python", ignore=NOT_BUILT)
    shutil.copytree(REPO / "gen" / "python", source / "gen" / "python", ignore=NOT_BUILT)
    out = scratch / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps"]
    run([*command, "-q", "-w", out, source / "clients" / "python"], scratch)
    (wheel,) = out.glob("telemesh_client-1.0.0-py3-none-any.whl")
    return wheel


@pytest.fixture(scope="module")
def partner_venv(tmp_path_factory: pytest.TempPathFactory) -> PartnerVenv:
    scratch = tmp_path_factory.mktemp("partner-python")
    assert not scratch.resolve().is_relative_to(REPO), "the partner works outside the repo"
    wheel = build_wheel(scratch)
    run([sys.executable, "-m", "venv", scratch / "venv"], scratch)
    venv = PartnerVenv(scratch / "venv" / "bin" / "python", scratch / "work")
    venv.folder.mkdir()
    install: list[str | Path] = [venv.python, "-m", "pip", "install", "-q"]
    run([*install, f"{wheel}[typing]", *TEST_DEPENDENCIES], venv.folder, venv.env())
    probe = (
        "import importlib.util as u, json, telemesh_client, telemesh.consent.v1.consent_pb2 as m;"
        "print(json.dumps([telemesh_client.__file__, m.__file__, u.find_spec('telemesh.config')]))"
    )
    client_file, stubs_file, runtime = json.loads(
        run([venv.python, "-c", probe], venv.folder, venv.env())
    )
    site = scratch / "venv" / "lib"
    assert Path(client_file).is_relative_to(site), client_file
    assert Path(stubs_file).is_relative_to(site), stubs_file
    assert runtime is None, "the project's runtime must not be importable there"
    return venv


def a_patient(mesh: MeshUnderTest) -> tuple[str, str, list[str]]:
    """A new patient who shares with a new clinic and another one: (patient, clinic,
    consent ids: the clinic's, the other clinic's, telehealth)."""
    suffix = uuid.uuid4().hex[:8]
    patient_id, clinic = f"p-partner-py-{suffix}", f"clinic-py-{suffix}"
    return patient_id, clinic, mesh.patient_shares_with(patient_id, [clinic, f"other-{suffix}"])


def test_the_example_with_the_installed_wheel(
    mesh: MeshUnderTest, partner_venv: PartnerVenv
) -> None:
    patient_id, clinic, (shared, _, _) = a_patient(mesh)
    example = partner_venv.folder / "partner_flow.py"
    shutil.copy(EXAMPLE, example)
    args = ["--edge", mesh.edge_url, "--ca-file", str(mesh.ca_bundle)]
    done = partner_venv.run(
        example, *args, "--token", mesh.token("partner", clinic), clinic, patient_id
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        f"sharing check: PERMIT ACTIVE_CONSENT (consent {shared} v1)",
        # Only the sharing consent naming this clinic: not the other clinic's, not telehealth.
        "consents visible: 1",
        f"consent: PARTNER_SHARING {clinic} ACTIVE v1",
    ]
    assert len(lines) == 4, lines
    assert lines[3].startswith("telehealth check: refused PERMISSION_DENIED PARTNER_SCOPE: ")

    stranger = partner_venv.run(
        example, *args, "--token", mesh.token("partner", "stranger"), "stranger", patient_id
    )
    assert stranger.returncode == 1, stranger.stdout + stranger.stderr
    assert stranger.stdout.splitlines()[:2] == [
        "sharing check: DENY NO_RECORD",
        "consents visible: 0",
    ]


def test_a_partners_own_calls_through_the_edge(
    mesh: MeshUnderTest, partner_venv: PartnerVenv
) -> None:
    patient_id, clinic, (shared, other, telehealth) = a_patient(mesh)
    script = partner_venv.folder / "partner_calls.py"
    script.write_text(SCRIPT)
    token = mesh.token("partner", clinic)
    done = partner_venv.run(
        script,
        mesh.edge_url,
        str(mesh.ca_bundle),
        token,
        clinic,
        patient_id,
        f"{other},{telehealth}",
        TRACEPARENT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout)

    assert seen["decision"] == "DECISION_PERMIT"
    assert seen["consent"] == seen["got"] == shared
    assert seen["listed"] == [[shared, "CONSENT_CATEGORY_PARTNER_SHARING", clinic]]
    scope = {
        "code": "PERMISSION_DENIED",
        "reason": "PARTNER_SCOPE",
        "domain": "telemesh.dev",
        "fields": [],
    }
    assert seen["telehealth"] == scope
    assert seen["others"] == [scope, scope]  # the other clinic's consent, the telehealth one
    assert seen["unknown"] == {
        "code": "NOT_FOUND",
        "reason": "CONSENT_NOT_FOUND",
        "domain": "telemesh.dev",
        "fields": [],
    }
    malformed: dict[str, Any] = seen["malformed"]
    assert (malformed["code"], malformed["reason"]) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert [field for field, _ in malformed["fields"]] == ["consent_id"]

    # The partner's traceparent went through the edge: the consent service's spans are in
    # the partner's trace (spans are exported in batches; wait for them, bounded).
    services = trace_services(mesh.home / "traces.db", TRACE_ID, tries=60)
    assert any("consent" in service for service in services), services


def trace_services(path: Path, trace_id: str, tries: int) -> set[str]:
    """The services with spans in `trace_id`, once there are any (polled `tries` times)."""
    for _ in range(tries):
        store = SpanStore(path)
        try:
            services = {span.service for span in store.spans(trace_id)}
        finally:
            store.close()
        if any("consent" in service for service in services):
            return services
        time.sleep(0.5)
    return services


def test_the_clients_own_tests_in_the_fresh_environment(partner_venv: PartnerVenv) -> None:
    """Retries on UNAVAILABLE for idempotent calls only, one deadline, token and
    traceparent on every attempt, error details: against an in-process server."""
    tests = partner_venv.folder / "client-tests"
    shutil.copytree(CLIENT / "tests", tests, ignore=NOT_BUILT)
    done = partner_venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", tests)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), summary  # none failed or skipped


def test_the_example_type_checks_against_the_installed_wheel(partner_venv: PartnerVenv) -> None:
    """The wheel is typed for its users: the stubs' .pyi files and py.typed markers and
    telemesh_client's annotations are enough for mypy --strict on the partner's code."""
    shutil.copy(EXAMPLE, partner_venv.folder / "typed_flow.py")
    done = partner_venv.run("-m", "mypy", "--strict", "--no-incremental", "typed_flow.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found in 1 source file"), done.stdout
