"""mesh/istio/: the base and every overlay build, and every resource validates the way a
cluster would validate it (Istio kinds against Istio's CRD schemas, core kinds with
kubernetes-validate); the security and traffic rules say what DESIGN.md §4 says."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest

from telemesh_tools.mesh import allowlist as allowlist_module
from telemesh_tools.mesh.istio import principal
from tests.support import kustomize, schemas
from tests.support.harness import REPO

ISTIO = REPO / "mesh" / "istio"
BUILDS = ["base", "overlays/dev", "overlays/prod"]


@functools.cache
def _built(name: str) -> list[dict[str, Any]]:
    return kustomize.build(ISTIO / name)


def _build(name: str) -> list[dict[str, Any]]:
    """`kustomize build mesh/istio/<name>` (built once; each caller gets its own copy)."""
    return copy.deepcopy(_built(name))


def _of(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


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
    dev = {r["metadata"]["name"]: r for r in _of(_build("overlays/dev"), "Deployment")}
    prod = {r["metadata"]["name"]: r for r in _of(_build("overlays/prod"), "Deployment")}
    assert dev["signaling"]["spec"]["replicas"] == 1
    assert prod["signaling"]["spec"]["replicas"] == 3
    image = prod["session"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.telemesh.example/telemesh:0.1.0"
    assert dev["session"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":dev")
    signaling = prod["signaling"]["spec"]["template"]["spec"]["containers"][0]
    assert signaling["resources"]["limits"]["memory"] == "2Gi"
    assert signaling["env"], "the strategic merge kept the container's other fields"
    gateway = _of(_build("overlays/dev"), "Gateway")[0]
    assert gateway["spec"]["servers"][0]["hosts"] == ["telemesh.localtest.me"]
    assert _of(_build("overlays/prod"), "PodDisruptionBudget")


def test_the_builder_refuses_what_it_does_not_support(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [../base]\nconfigMapGenerator: [{name: x}]\n"
    )
    with pytest.raises(kustomize.KustomizeError, match="configMapGenerator"):
        kustomize.build(tmp_path)
    base = ISTIO / "base"
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\npatches:\n- target: {{kind: Gateway, name: edge}}\n"
        "  patch: '[{op: replace, path: /spec/nothing/here, value: 1}]'\n"
    )
    with pytest.raises(kustomize.KustomizeError, match="does not apply"):
        kustomize.build(tmp_path)


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
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        name = deployment["metadata"]["name"]
        if name in ("session", "signaling", "consent", "billing"):
            (container,) = pod["containers"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert "grpc" in container[probe], (name, probe)
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
