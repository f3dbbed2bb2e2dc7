"""The image itself, and each service started from it with `podman run` (host network,
locked down as the Kubernetes manifests lock it down): it migrates its own PostgreSQL
database, answers health SERVING, serves an authenticated call, and drains and exits
cleanly on SIGTERM (the service is PID 1 in its container). The standalone outbox relay
runs from the same image beside the session service, on its database and PHI keys."""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from pathlib import Path

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from telemesh.config import SERVICES
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh_tools.mesh.istio import JWKS_DIR, RUN_AS
from telemesh_tools.stack.process import free_port, stop_all
from tests.containers import podman
from tests.support.flows import rid
from tests.support.harness import Tokens

# Whichever test runs first also builds the image (on a fresh machine: debootstrap, and
# pip downloading every wheel), which can take longer than the default timeout.
pytestmark = pytest.mark.timeout(900)

INSPECT = """
import importlib, json, os, shutil, subprocess
found = {tool: shutil.which(tool) for tool in ("gcc", "cc", "make", "pip", "pip3")}
compilers = [name for name in os.listdir("/usr/bin") if name.endswith(("gcc", "-cc"))]
modules = ["svc_session", "svc_signaling", "svc_consent", "svc_billing",
           "telemesh.outbox_relay", "telemesh_tools.cli.main",
           "telemesh.session.v1.session_pb2_grpc", "telemesh.billing.v1.billing_pb2"]
for name in modules:
    importlib.import_module(name)
commands = {"telemesh": ["telemesh", "--help"],
            "relay": ["python", "-m", "telemesh.outbox_relay", "--help"]}
runs = {name: subprocess.run(argv, capture_output=True).returncode
        for name, argv in commands.items()}
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "home": os.environ["TELEMESH_HOME"],
                  "bytecode": os.environ.get("PYTHONDONTWRITEBYTECODE"), "tools": found,
                  "runs": runs, "cc_compilers": compilers}))
"""


def test_the_image_holds_everything_and_no_build_tools(image: podman.BuiltImage) -> None:
    result = podman.podman("run", "--rm", "--network", "host", image.id, "python", "-c", INSPECT)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (RUN_AS, RUN_AS)  # the manifests' runAsUser
    assert seen["home"] == "/var/lib/telemesh"
    assert seen["bytecode"] == "1"
    assert seen["tools"] == dict.fromkeys(seen["tools"])  # no compiler, make or pip
    assert seen["cc_compilers"] == []
    assert seen["runs"] == {"telemesh": 0, "relay": 0}
    labels = (
        podman.podman(
            "image", "inspect", "--format", "{{json .Config.Labels}} {{.Config.User}}", image.id
        )
        .stdout.strip()
        .rsplit(" ", 1)
    )
    assert json.loads(labels[0])["org.opencontainers.image.version"] == image.name.split(":")[1]
    assert labels[1] == f"{RUN_AS}:{RUN_AS}"


def migrated_revision(url: str) -> str | None:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def test_each_service_starts_from_the_image_migrates_postgresql_and_serves(
    image: podman.BuiltImage, databases: dict[str, str], tmp_path: Path
) -> None:
    tokens = Tokens(tmp_path / "issuer-home")
    jwks = tmp_path / "jwks"
    jwks.mkdir()
    shutil.copy(tokens.issuer.jwks_path, jwks / "jwks.json")
    addresses = {service: f"127.0.0.1:{free_port()}" for service in SERVICES}
    run = uuid.uuid4().hex[:8]
    # The relay reads the session's sealed outbox: both take the same PHI keys.
    phi_keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    containers = {}
    for service in SERVICES:
        env = {
            "TELEMESH_LISTEN": addresses[service],
            "TELEMESH_DATABASE_URL": databases[service],
            "TELEMESH_DEV_ISSUER": "0",
            "TELEMESH_JWKS_FILE": f"{JWKS_DIR}/jwks.json",
            "TELEMESH_DRAIN_SECONDS": "5",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "TELEMESH_SESSION_PHI_KEYS": phi_keys,
            **{f"TELEMESH_{peer.upper()}_ADDR": addresses[peer] for peer in SERVICES},
        }
        containers[service] = podman.container(
            f"telemesh-test-{run}-{service}",
            image.id,
            ["python", "-m", f"svc_{service}"],
            env=env,
            log_path=tmp_path / f"{service}.log",
            health=addresses[service],
            state=tmp_path / f"state-{service}",
            mounts=[(jwks, JWKS_DIR, "ro")],
            owned=[jwks, jwks / "jwks.json"],
        )
    relay_log = tmp_path / "relay.log"
    containers["relay"] = podman.container(
        f"telemesh-test-{run}-relay",
        image.id,
        ["python", "-m", "telemesh.outbox_relay", "--service", "session"],
        env={
            "TELEMESH_DATABASE_URL": databases["session"],
            "TELEMESH_SESSION_PHI_KEYS": phi_keys,
            "TELEMESH_BILLING_ADDR": addresses["billing"],
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        },
        log_path=relay_log,
        state=tmp_path / "state-relay",
        ready=lambda: relay_log.exists() and '"message": "relaying"' in relay_log.read_text(),
    )
    try:
        for service in SERVICES:
            containers[service].start()
        for service in SERVICES:
            # SERVING: migrations ran before the server started.
            containers[service].wait_ready(120)
        containers["relay"].start().wait_ready(60)  # on the migrated session database
        revisions = {service: migrated_revision(databases[service]) for service in SERVICES}
        assert all(revisions.values()), revisions
        # An end-user call: the token verified against the mounted JWKS, the write in
        # the service's own PostgreSQL database.
        with grpc.insecure_channel(addresses["session"]) as channel:
            reply = session_pb2_grpc.SessionServiceStub(channel).CreateClinician(
                session_pb2.CreateClinicianRequest(
                    request_id=rid(),
                    clinician=session_pb2.Clinician(
                        clinician_id="c-container",
                        display_name="Dr. Container",
                        time_zone="UTC",
                        practice_id="practice-1",
                    ),
                ),
                metadata=tokens.clinician("c-container"),
                timeout=10,
            )
        assert reply.clinician.clinician_id == "c-container"
        stop_all(containers.values())
        for name, running in containers.items():
            assert running.process is not None
            assert running.process.returncode == 0, (name, running.logs()[-3000:])
        for service in SERVICES:
            assert '"message": "stopped"' in containers[service].logs(), service
    finally:
        stop_all(containers.values())
