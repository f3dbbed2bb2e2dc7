"""Finding 3: a service takes its caller's service identity only from the element of
`x-forwarded-client-cert` its own sidecar wrote (the last one), and only when it is
exactly `spiffe://<trust domain>/ns/<namespace>/sa/<known account>`; anything else is
no identity, with no falling back to elements the caller wrote. The sidecars, local and
Istio, are configured so that the last element is theirs (SANITIZE_SET)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from telemesh.auth import MESH_ACCOUNTS, Authenticator
from telemesh.config import RuntimeSettings
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh_tools.mesh import allowlist as allowlist_module
from telemesh_tools.mesh import istio
from telemesh_tools.stack.local_mesh import load_templates
from tests.support import kustomize
from tests.support.harness import REPO, Stack

TD, NS = "telemesh.local", "telemesh"
BY = f"By=spiffe://{TD}/ns/{NS}/sa/session;Hash=0123abcd"


def _element(uri: str, subject: str = "") -> str:
    subject_part = f';Subject="{subject}"' if subject else ""
    return f"{BY}{subject_part};URI={uri}"


def _id(account: str, namespace: str = NS, trust_domain: str = TD) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}"


# header -> the service account it must give (None: no identity).
HEADERS: dict[str, tuple[str, str | None]] = {
    "exact id": (_element(_id("signaling")), "signaling"),
    "another namespace": (_element(_id("signaling", namespace="attacker")), None),
    "another trust domain": (_element(_id("signaling", trust_domain="evil.example")), None),
    "unknown account": (_element(_id("mallory")), None),
    "account with a path after it": (_element(_id("signaling") + "/x"), None),
    "earlier caller element, our sidecar's names another account": (
        f"{_element(_id('session'))},{_element(_id('mallory'))}",
        None,
    ),
    "earlier caller element, ours from another namespace": (
        f"{_element(_id('session'))},{_element(_id('session', namespace='attacker'))}",
        None,
    ),
    "caller elements before ours": (
        f"URI={_id('session')},{_element(_id('billing'))}",
        "billing",
    ),
    "an unbalanced quote in a caller's element": (
        f'URI={_id("session")};Subject="x,{_element(_id("billing"))}',
        "billing",
    ),
    "a quoted subject holding commas": (
        _element(_id("consent"), subject="CN=a,O=b,URI=spiffe://x/ns/telemesh/sa/session"),
        "consent",
    ),
    "two URIs in our element": (f"{_element(_id('session'))};URI={_id('billing')}", None),
    "no URI": (BY, None),
    "empty": ("", None),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_only_the_sidecars_exact_spiffe_id_counts(case: str) -> None:
    header, expected = HEADERS[case]
    settings = RuntimeSettings(trust_forwarded_identity=True, trust_domain=TD, namespace=NS)
    authenticator = Authenticator(settings)
    assert authenticator.forwarded_service({"x-forwarded-client-cert": header}) == expected


# --- a real service process, as an APPEND_FORWARD sidecar would hand it the header -----


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("forwarded-identity"),
        "sqlite",
        {"TELEMESH_TRUST_FORWARDED_IDENTITY": "1", "TELEMESH_SERVICE_TOKENS": "0"},
    ).start("session")
    try:
        yield stack
    finally:
        stack.close()


def _as_forwarded(stack: Stack, header: str) -> grpc.StatusCode:
    """GetJoinTokenKeys (any authenticated caller) with only a forwarded identity."""
    with grpc.insecure_channel(stack.addresses["session"]) as channel:
        try:
            session_pb2_grpc.SessionServiceStub(channel).GetJoinTokenKeys(
                session_pb2.GetJoinTokenKeysRequest(),
                metadata=(("x-forwarded-client-cert", header),),
                timeout=10,
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    "case",
    [
        "another namespace",
        "earlier caller element, our sidecar's names another account",
        "earlier caller element, ours from another namespace",
    ],
)
def test_a_forged_forwarded_identity_is_nobody_at_a_real_service(session: Stack, case: str) -> None:
    assert _as_forwarded(session, HEADERS["exact id"][0]) == grpc.StatusCode.OK  # control
    assert _as_forwarded(session, HEADERS[case][0]) == grpc.StatusCode.UNAUTHENTICATED


def test_the_edges_identity_alone_is_nobody(session: Stack) -> None:
    """The edge forwards end users' calls (with their token); without one it is no
    service principal."""
    assert _as_forwarded(session, _element(_id("edge"))) == grpc.StatusCode.UNAUTHENTICATED


# --- the sidecars make the last element theirs -------------------------------------


def test_the_local_sidecars_set_the_header_themselves() -> None:
    for name, config in load_templates().items():
        if not name.startswith("sidecar-"):
            continue
        inbound = next(
            listener
            for listener in config["static_resources"]["listeners"]
            if listener["name"] == "inbound"
        )
        hcm = inbound["filter_chains"][0]["filters"][0]["typed_config"]
        assert hcm["forward_client_cert_details"] == "SANITIZE_SET", name
        assert hcm["set_current_client_cert_details"] == {"uri": True}, name


def _of(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def _proxy_config(deployment: dict[str, Any]) -> dict[str, Any]:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    config: dict[str, Any] = json.loads(annotations.get(istio.PROXY_CONFIG_ANNOTATION, "{}"))
    return config


@pytest.mark.parametrize("build", ["base", "overlays/dev", "overlays/prod"])
def test_the_istio_manifests_make_the_last_element_the_sidecars(build: str) -> None:
    """Istio's sidecars default to APPEND_FORWARD (and forward a plaintext caller's
    header untouched); every service that trusts the header gets SANITIZE_SET, and its
    trust domain and namespace are the ones its callers' principals use."""
    resources = kustomize.build(REPO / "mesh" / "istio" / build)
    services = set(allowlist_module.load().services)
    deployments = {d["metadata"]["name"]: d for d in _of(resources, "Deployment")}
    for name in services:
        deployment = deployments[name]
        config = _proxy_config(deployment)
        assert config["proxyHeaders"]["forwardedClientCert"] == "SANITIZE_SET", name
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["TELEMESH_TRUST_FORWARDED_IDENTITY"] == "1", name
        assert env["TELEMESH_NAMESPACE"] == deployment["metadata"]["namespace"], name
        assert istio.principal(name) == (
            f"{env['TELEMESH_TRUST_DOMAIN']}/ns/{env['TELEMESH_NAMESPACE']}/sa/{name}"
        )
    edge = deployments[allowlist_module.load().edge.identity]
    assert _proxy_config(edge)["gatewayTopology"]["forwardClientCertDetails"] == "SANITIZE"


def test_the_known_accounts_are_the_meshs_service_accounts() -> None:
    allowlist = allowlist_module.load()
    assert {*allowlist.services, allowlist.edge.identity} == MESH_ACCOUNTS
    accounts = {a["metadata"]["name"] for a in istio.service_accounts(allowlist)}
    assert accounts >= MESH_ACCOUNTS
