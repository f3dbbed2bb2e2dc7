"""mesh/istio/: the base and every overlay build with real kustomize (`kubectl
kustomize`), and every resource validates the way a cluster would validate it (Istio
kinds against Istio's CRD schemas, core kinds with kubernetes-validate); the security and
traffic rules say what DESIGN.md §4 says; the workloads are what a platform team expects
and agree with the Containerfile (tests/containers runs them from the image)."""

from __future__ import annotations

import copy
import functools
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from telemesh_tools.mesh import allowlist as allowlist_module
from telemesh_tools.mesh.istio import IMAGE, principal
from tests.support import kustomize, schemas
from tests.support.harness import REPO

ISTIO = REPO / "mesh" / "istio"
BUILDS = ["base", "overlays/dev", "overlays/prod"]
SERVICES = ("session", "signaling", "consent", "billing")
STATELESS = ("session", "consent", "billing")  # autoscaled in production
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@functools.cache
def _built(name: str) -> list[dict[str, Any]]:
    return kustomize.build(ISTIO / name)


def _build(name: str) -> list[dict[str, Any]]:
    """`kustomize build mesh/istio/<name>` (built once; each caller gets its own copy)."""
    return copy.deepcopy(_built(name))


def _of(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def _by_name(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in _of(resources, kind)}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found"
    return match.group(1)


@pytest.fixture(scope="module")
def istio_schemas() -> schemas.IstioSchemas:
    if not schemas.ISTIO_CRDS.exists():
        pytest.skip(f"Istio CRD schemas not found at {schemas.ISTIO_CRDS} (../shared/ is absent)")
    return schemas.IstioSchemas.load()


@pytest.mark.parametrize("name", BUILDS)
def test_istio_resources_validate_against_istio_crd_schemas(
    name: str, istio_schemas: schemas.IstioSchemas
) -> None:
    resources = [r for r in _build(name) if schemas.is_istio(r)]
    assert len(resources) >= 12
    problems = [p for r in resources for p in istio_schemas.errors(r)]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("name", BUILDS)
def test_core_resources_validate_with_kubernetes_validate(name: str) -> None:
    resources = [r for r in _build(name) if not schemas.is_istio(r)]
    assert {"Namespace", "ServiceAccount", "Deployment", "Service", "ConfigMap"} <= {
        r["kind"] for r in resources
    }
    problems = [p for r in resources for p in schemas.kubernetes_errors(r)]
    assert problems == [], "\n".join(problems)


def test_the_validation_refuses_what_a_cluster_would(istio_schemas: schemas.IstioSchemas) -> None:
    resources = _build("base")
    policy = next(r for r in _of(resources, "AuthorizationPolicy") if r["spec"].get("rules"))
    policy["spec"]["rules"][0]["form"] = policy["spec"]["rules"][0].pop("from")
    rule = _of(resources, "DestinationRule")[0]
    rule["spec"]["trafficPolicy"]["tls"]["mode"] = "MUTUAL_ISTIO"
    assert len(istio_schemas.errors(policy)) == 1
    assert "MUTUAL_ISTIO" in istio_schemas.errors(rule)[0]
    deployment = _of(resources, "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert schemas.kubernetes_errors(deployment)


def test_overlays_change_what_they_say() -> None:
    dev = _by_name(_build("overlays/dev"), "Deployment")
    prod = _by_name(_build("overlays/prod"), "Deployment")
    assert dev["signaling"]["spec"]["replicas"] == 1
    assert prod["signaling"]["spec"]["replicas"] == 3
    # The release's version is the tag everywhere: prod pulls it from the registry, dev
    # runs it as podman names a local `make image`.
    assert _container(prod["session"])["image"] == f"registry.telemesh.example/telemesh:{VERSION}"
    assert _container(dev["session"])["image"] == f"localhost/telemesh/telemesh:{VERSION}"
    signaling = _container(prod["signaling"])
    assert signaling["resources"]["limits"]["memory"] == "2Gi"
    assert signaling["env"], "the strategic merge kept the container's other fields"
    gateway = _of(_build("overlays/dev"), "Gateway")[0]
    assert gateway["spec"]["servers"][0]["hosts"] == ["telemesh.localtest.me"]


def test_kustomize_refuses_a_patch_that_does_not_apply(tmp_path: Path) -> None:
    base = os.path.relpath(ISTIO / "base", tmp_path)  # kustomize takes relative paths only
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\npatches:\n- target: {{kind: Gateway, name: edge}}\n"
        "  patch: |-\n    - op: replace\n      path: /spec/nothing/here\n      value: 1\n"
    )
    with pytest.raises(kustomize.KustomizeError, match="nothing"):
        kustomize.build(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\nconfigMapGenerator: [{{name: x, literals: [not-a-pair]}}]\n"
    )
    with pytest.raises(kustomize.KustomizeError):
        kustomize.build(tmp_path)


def test_the_base_runs_the_image_make_image_builds() -> None:
    """The name scripts/build-image.sh gives the image, and what the Containerfile makes
    of it: its user, its TELEMESH_HOME and its ports are what the Deployments use."""
    script = (REPO / "scripts" / "build-image.sh").read_text()
    assert "image=${IMAGE:-telemesh/telemesh:$version}" in script
    assert f"telemesh/telemesh:{VERSION}" == IMAGE
    containerfile = (REPO / "Containerfile").read_text()
    uid = int(_found(r"useradd --uid (\d+) --gid \d+", containerfile))
    home = _found(r"TELEMESH_HOME=(\S+)", containerfile)
    exposed = {int(port) for port in _found(r"(?m)^EXPOSE (.+)$", containerfile).split()}
    deployments = _by_name(_build("base"), "Deployment")
    for name in SERVICES:
        pod = deployments[name]["spec"]["template"]["spec"]
        container = _container(deployments[name])
        assert container["image"] == IMAGE
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["runAsGroup"] == uid
        assert _env(container)["TELEMESH_HOME"]["value"] == home
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[home] == "state"
        port = container["ports"][0]["containerPort"]
        assert port in exposed
        assert _env(container)["TELEMESH_LISTEN"]["value"] == f"0.0.0.0:{port}"


def test_strict_mtls_and_deny_by_default() -> None:
    resources = _build("base")
    (peer,) = _of(resources, "PeerAuthentication")
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}
    policies = {r["metadata"]["name"]: r for r in _of(resources, "AuthorizationPolicy")}
    assert policies["deny-all"]["spec"] == {}
    for rule in _of(resources, "DestinationRule"):
        assert rule["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"


def test_authorization_policies_follow_the_allow_list() -> None:
    allowlist = allowlist_module.load()
    policies = {r["metadata"]["name"]: r for r in _of(_build("base"), "AuthorizationPolicy")}
    for service in allowlist.services:
        rules = policies[f"{service}-allow"]["spec"]["rules"]
        by_caller = {
            rule["from"][0]["source"]["principals"][0]: rule["to"][0]["operation"]["paths"]
            for rule in rules
            if "when" not in rule
        }
        assert by_caller == {
            principal(caller): paths for caller, paths in allowlist.callers_of(service).items()
        }
        for rule in rules:
            if "when" in rule:  # edge traffic: the gateway's identity and a valid token
                source = rule["from"][0]["source"]
                assert source == {"principals": [principal("edge")], "requestPrincipals": ["*"]}
                assert rule["when"][0]["key"] == "request.auth.claims[role]"
    gateway_rules = policies["edge-require-token"]["spec"]["rules"]
    for rule in gateway_rules[1:]:
        assert rule["from"][0]["source"]["requestPrincipals"] == ["*"]
    (jwt,) = _of(_build("base"), "RequestAuthentication")
    assert jwt["spec"]["jwtRules"][0]["issuer"] == allowlist.edge.issuer


def test_workloads_are_locked_down_and_speak_grpc() -> None:
    resources = _build("base")
    for deployment in _of(resources, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
        name = deployment["metadata"]["name"]
        if name in SERVICES:
            container = _container(deployment)
            port = container["ports"][0]["containerPort"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"] == {"port": port}, (name, probe)
            # A read-only root: scratch and state are emptyDir volumes.
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            assert "emptyDir" in volumes[mounts["/var/lib/telemesh"]]
    ports = {r["metadata"]["name"]: r["spec"]["ports"] for r in _of(resources, "Service")}
    for name in ("session", "signaling", "consent", "billing"):
        assert ports[name][0]["appProtocol"] == "grpc"
    assert ports["edge"][0]["appProtocol"] == "grpc-web"


def test_edge_routing_cors_affinity_and_traces() -> None:
    resources = _build("base")
    (service,) = _of(resources, "VirtualService")
    for route in service["spec"]["http"]:
        cors = route["corsPolicy"]
        assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= set(
            cors["exposeHeaders"]
        )
        assert "timeout" not in route  # Istio's default: no route timeout for streams
    signaling = next(
        r for r in _of(resources, "DestinationRule") if r["metadata"]["name"] == "signaling"
    )
    assert signaling["spec"]["trafficPolicy"]["loadBalancer"] == {
        "consistentHash": {"httpHeaderName": "x-telemesh-visit-id"}
    }
    (telemetry,) = _of(resources, "Telemetry")
    assert telemetry["spec"]["tracing"][0]["providers"] == [{"name": "otel-collector"}]
    names = {(r["kind"], r["metadata"]["name"]) for r in resources}
    assert {("Deployment", "otel-collector"), ("ConfigMap", "otel-collector-config")} <= names


def test_every_workload_has_a_disruption_budget_and_spreads() -> None:
    resources = _build("base")
    budgets = _by_name(resources, "PodDisruptionBudget")
    for name in (*SERVICES, "edge"):
        assert budgets[name]["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app": name}},
        }
        pod = _by_name(resources, "Deployment")[name]["spec"]["template"]["spec"]
        keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in pod["topologySpreadConstraints"]:
            assert constraint["labelSelector"] == {"matchLabels": {"app": name}}


def test_production_autoscales_the_stateless_services() -> None:
    resources = _build("overlays/prod")
    autoscalers = _by_name(resources, "HorizontalPodAutoscaler")
    deployments = _by_name(resources, "Deployment")
    assert set(autoscalers) == set(STATELESS)
    for name, autoscaler in autoscalers.items():
        assert autoscaler["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert autoscaler["spec"]["minReplicas"] >= 2
        (metric,) = autoscaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        # Utilization is of the request: the container must have one.
        assert _container(deployments[name])["resources"]["requests"]["cpu"]
        assert "replicas" not in deployments[name]["spec"], "the autoscaler owns the count"
    assert deployments["signaling"]["spec"]["replicas"] == 3


def test_production_takes_postgresql_and_keys_from_secrets_never_sqlite() -> None:
    deployments = _by_name(_build("overlays/prod"), "Deployment")
    for name in SERVICES:
        container = _container(deployments[name])
        env = _env(container)
        database = env["TELEMESH_DATABASE_URL"]
        assert "value" not in database
        assert database["valueFrom"]["secretKeyRef"] == {
            "name": f"{name}-database",
            "key": "url",
            "optional": False,
        }
        assert not [e for e in env.values() if "sqlite" in str(e.get("value", "")).lower()]
    for name in ("session", "billing"):
        keys = _env(_container(deployments[name]))[f"TELEMESH_{name.upper()}_PHI_KEYS"]
        assert keys["valueFrom"]["secretKeyRef"]["name"] == f"{name}-phi-keys"
    session = deployments["session"]["spec"]["template"]["spec"]
    key_dir = _env(_container(deployments["session"]))["TELEMESH_JOIN_TOKEN_KEY_DIR"]["value"]
    volumes = {v["name"]: v for v in session["volumes"]}
    (mount,) = [
        m for m in _container(deployments["session"])["volumeMounts"] if m["mountPath"] == key_dir
    ]
    assert volumes[mount["name"]]["secret"]["secretName"] == "session-join-token-key"
    # The base (and dev) fall back to SQLite on the state emptyDir: the Secret is optional.
    base = _by_name(_build("base"), "Deployment")
    for name in SERVICES:
        reference = _env(_container(base[name]))["TELEMESH_DATABASE_URL"]["valueFrom"]
        assert reference["secretKeyRef"]["optional"] is True
