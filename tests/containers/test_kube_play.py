"""The rendered Kubernetes Deployments and Services themselves, run with `podman kube
play --network host`: the test that the manifests and the image agree (command, ports,
environment, probes, volumes, user, read-only root filesystem).

What a cluster would add, the test adds: each service's `<service>-database` Secret (a
fresh PostgreSQL database; podman reads secretKeyRef from podman secrets) and the
`telemesh-jwks` ConfigMap. The Istio resources, the edge (an Istio gateway, image
`auto`) and the OpenTelemetry Collector are left out. What podman 4.3 (Debian 12) cannot
run as written is adapted, and only that:

- one replica each: with host networking every replica would bind the same port;
- no `ports` lists: podman turns containerPort into host port mappings, which host
  networking refuses (the probes still name the port, and the test checks there);
- emptyDir volumes named per pod: podman makes an emptyDir a named volume, shared by
  every pod that uses the same volume name.

Peers are addressed by their cluster DNS names, which do not resolve here; each service
is checked on its own: health SERVING on its probe's port (podman does not run gRPC
probes), its own database migrated, its process the image's user with a read-only root.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from telemesh.config import SERVICES
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh_tools.mesh.istio import IMAGE, JWKS_CONFIGMAP, RUN_AS
from telemesh_tools.stack.process import grpc_health_probe
from tests.containers import podman
from tests.support import kustomize
from tests.support.flows import rid
from tests.support.harness import REPO, Tokens

# Whichever test runs first also builds the image (on a fresh machine: debootstrap, and
# pip downloading every wheel), which can take longer than the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def probe_port(deployment: dict[str, Any]) -> int:
    port: int = _container(deployment)["readinessProbe"]["grpc"]["port"]
    return port


def for_podman(resources: list[dict[str, Any]], jwks: str) -> list[dict[str, Any]]:
    """The services' Deployments and Services from `resources`, adapted as the module
    docstring says, after a ConfigMap `telemesh-jwks` holding `jwks`."""
    played: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": JWKS_CONFIGMAP, "namespace": "telemesh"},
            "data": {"jwks.json": jwks},
        }
    ]
    for resource in resources:
        name = resource["metadata"]["name"]
        if resource["kind"] == "Service" and name in SERVICES:
            played.append(copy.deepcopy(resource))
        if resource["kind"] != "Deployment" or name not in SERVICES:
            continue
        deployment = copy.deepcopy(resource)
        deployment["spec"]["replicas"] = 1
        pod = deployment["spec"]["template"]["spec"]
        renamed = {
            volume["name"]: f"{name}-{volume['name']}"
            for volume in pod["volumes"]
            if "emptyDir" in volume
        }
        for volume in pod["volumes"]:
            volume["name"] = renamed.get(volume["name"], volume["name"])
        for container in pod["containers"]:
            container.pop("ports")
            for mount in container["volumeMounts"]:
                mount["name"] = renamed.get(mount["name"], mount["name"])
        played.append(deployment)
    return played


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _migrated(url: str) -> bool:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone() is not None


def _wait_serving(address: str, name: str, seconds: float = 120) -> None:
    probe = grpc_health_probe(address)
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            logs = podman.podman("logs", name, check=False)
            raise AssertionError(f"{name} not SERVING at {address}:\n{logs.stderr[-3000:]}")
        time.sleep(0.2)


def test_the_rendered_deployments_and_services_run_with_podman_kube_play(
    image: podman.BuiltImage, databases: dict[str, str], tmp_path: Path
) -> None:
    resources = kustomize.build(REPO / "mesh" / "istio" / "base")
    deployments = {
        r["metadata"]["name"]: r
        for r in resources
        if r["kind"] == "Deployment" and r["metadata"]["name"] in SERVICES
    }
    assert {_container(d)["image"] for d in deployments.values()} == {IMAGE}
    tokens = Tokens(tmp_path / "issuer-home")
    played = tmp_path / "play.yaml"
    played.write_text(
        yaml.safe_dump_all(for_podman(resources, tokens.issuer.jwks_path.read_text()))
    )
    run = uuid.uuid4().hex[:8]
    secrets = [f"{service}-database" for service in SERVICES]
    with podman.machine_lock():  # the manifests' fixed ports and podman's global names
        busy = [p for p in map(probe_port, deployments.values()) if not _port_is_free(p)]
        assert not busy, f"ports the manifests use are taken on this machine: {busy}"
        podman.podman("tag", image.id, IMAGE)  # this session's build under the manifests' name
        try:
            for service, secret in zip(SERVICES, secrets, strict=True):
                # What `kubectl create secret generic <service>-database --from-literal=url=`
                # makes, as podman reads it: a map of base64 values.
                data = {"url": base64.b64encode(databases[service].encode()).decode()}
                source = tmp_path / f"{secret}-{run}.json"
                source.write_text(json.dumps(data))
                podman.podman("secret", "create", secret, str(source))
            podman.podman("kube", "play", "--network", "host", str(played), timeout=300)
            for service, deployment in deployments.items():
                name = f"{service}-pod-0-{service}"
                _wait_serving(f"127.0.0.1:{probe_port(deployment)}", name)
                assert _migrated(databases[service]), service
                seen = podman.podman(
                    "inspect",
                    "--format",
                    "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.State.Status}}",
                    name,
                ).stdout.split()
                assert seen == [f"{RUN_AS}:{RUN_AS}", "true", "running"], (service, seen)
                uid = podman.podman("exec", name, "id", "-u").stdout.strip()
                assert uid == str(RUN_AS)
            # The mounted ConfigMap's JWKS verifies an end-user token; the write lands
            # in the session's PostgreSQL database (from its Secret).
            port = probe_port(deployments["session"])
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = session_pb2_grpc.SessionServiceStub(channel).CreateClinician(
                    session_pb2.CreateClinicianRequest(
                        request_id=rid(),
                        clinician=session_pb2.Clinician(
                            clinician_id="c-kube",
                            display_name="Dr. Kube",
                            time_zone="UTC",
                            practice_id="practice-1",
                        ),
                    ),
                    metadata=tokens.clinician("c-kube"),
                    timeout=10,
                )
            assert reply.clinician.clinician_id == "c-kube"
        finally:
            podman.podman("kube", "down", str(played), check=False, timeout=120)
            for secret in secrets:
                podman.podman("secret", "rm", secret, check=False)
            volumes = [f"{s}-{v}" for s in SERVICES for v in ("state", "tmp")]
            for volume in (*volumes, JWKS_CONFIGMAP):  # the ConfigMap's volume stays otherwise
                podman.podman("volume", "rm", "--force", volume, check=False)
