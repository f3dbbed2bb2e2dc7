"""The allow-list: checked against the contract, and everything rendered from it fresh."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from telemesh.config import RuntimeSettings
from telemesh_tools.mesh import allowlist as allowlist_module
from telemesh_tools.mesh import envoy, render
from telemesh_tools.mesh.allowlist import AllowList, ServiceCall
from telemesh_tools.mesh.settings import MeshSettings
from telemesh_tools.stack.local_mesh import LocalMesh, load_templates
from tests.support.harness import REPO

RBAC = "envoy.filters.http.rbac"


def _allowlist() -> AllowList:
    return allowlist_module.load()


def _inbound_filters(config: dict[str, object]) -> dict[str, dict[str, object]]:
    listener = next(
        item
        for item in config["static_resources"]["listeners"]  # type: ignore[index]
        if item["name"] == "inbound"
    )
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return {"hcm": hcm, **{f["name"]: f["typed_config"] for f in hcm["http_filters"]}}


def test_the_allow_list_matches_the_contract() -> None:
    allowlist = _allowlist()
    problems = allowlist_module.problems(
        allowlist, allowlist_module.contract_methods(allowlist.services)
    )
    assert problems == [], "\n".join(problems)


def test_the_check_finds_unknown_and_unplaced_methods() -> None:
    allowlist = _allowlist()
    contract = allowlist_module.contract_methods(allowlist.services)
    broken = dataclasses.replace(
        allowlist,
        calls=(*allowlist.calls, ServiceCall("session", "billing", ("ChargeEverything",))),
        internal_only={},
    )
    problems = allowlist_module.problems(broken, contract)
    assert any("no method 'ChargeEverything'" in p for p in problems)
    assert any(
        "RecordVisitCompletion: neither in edge.roles nor internal_only" in p for p in problems
    )


def test_rendered_files_are_up_to_date() -> None:
    stale = render.stale_files(_allowlist())
    assert stale == [], f"run `.venv/bin/telemesh mesh render`; stale: {stale}"


def test_a_change_to_the_allow_list_makes_the_rendered_files_stale(tmp_path: Path) -> None:
    for folder in ("mesh/local", "mesh/istio/base"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    allowlist = _allowlist()
    assert render.stale_files(allowlist, tmp_path) == []
    fewer = dataclasses.replace(allowlist, calls=allowlist.calls[1:])
    stale = render.stale_files(fewer, tmp_path)
    assert "mesh/local/sidecar-consent.yaml" in stale
    assert "mesh/istio/base/authorizationpolicies.yaml" in stale


def test_sidecar_rbac_allows_exactly_the_allow_listed_callers() -> None:
    allowlist = _allowlist()
    templates = load_templates()
    for service in allowlist.services:
        filters = _inbound_filters(templates[f"sidecar-{service}"])
        policies = filters[RBAC]["rules"]["policies"]  # type: ignore[index]
        expected = {f"service:{caller}" for caller in allowlist.callers_of(service)}
        if allowlist.edge_methods(service):
            expected.add("service:edge")
        assert set(policies) == expected, service
        for name, policy in policies.items():
            caller = name.removeprefix("service:")
            paths = {p["url_path"]["path"]["exact"] for p in policy["permissions"]}
            allowed = allowlist.callers_of(service).get(caller) or list(
                allowlist.edge_methods(service)
            )
            assert paths == set(allowed), (service, caller)


def test_sidecars_hand_the_verified_identity_to_the_service_and_drop_forged_ones() -> None:
    for name, config in load_templates().items():
        if not name.startswith("sidecar-"):
            continue
        hcm = _inbound_filters(config)["hcm"]
        assert hcm["forward_client_cert_details"] == "SANITIZE_SET"
        assert hcm["set_current_client_cert_details"] == {"uri": True}


def test_every_placeholder_is_filled_by_the_local_mesh(tmp_path: Path) -> None:
    mesh = LocalMesh(tmp_path, RuntimeSettings(home=tmp_path), MeshSettings(edge_port=0))
    for name, template in load_templates().items():
        values = mesh.envoy_values(name)
        needed = envoy.placeholders(envoy.without_tracing(template))
        assert needed <= set(values), (name, needed - set(values))
        assert envoy.placeholders(mesh.envoy_config(name)) == set()
