"""The one allow-list (mesh/allowlist.yaml): who may call which service and method.

Service to service rules name the caller's identity (its service account); edge rules
name the end user's role (the `role` claim of a verified JWT). Both the local Envoy RBAC
and Istio's AuthorizationPolicies are rendered from an `AllowList`, so they cannot drift
apart. `problems()` checks the file against the published contract.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from telemesh.auth import USER_ROLES
from telemesh.config import load as load_settings
from telemesh_tools.mesh.settings import CHECKOUT, MeshSettings

REPO = CHECKOUT  # the tools run from a checkout


class AllowListError(ValueError):
    """The allow-list file is malformed."""


@dataclass(frozen=True)
class ServiceCall:
    """`caller` (a service identity) may call `methods` of `service`."""

    caller: str
    service: str
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Cors:
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...]
    exposed_headers: tuple[str, ...]
    max_age_seconds: int


@dataclass(frozen=True)
class EdgePolicy:
    """End users through the edge: which role may call which methods of which service."""

    identity: str
    issuer: str
    audiences: tuple[str, ...]
    jwks_uri: str
    cors: Cors
    roles: Mapping[str, Mapping[str, tuple[str, ...]]]


@dataclass(frozen=True)
class AllowList:
    services: Mapping[str, str]  # short name -> full gRPC service name
    calls: tuple[ServiceCall, ...]
    edge: EdgePolicy
    internal_only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    affinity: Mapping[str, str] = field(default_factory=dict)

    def prefix(self, service: str) -> str:
        """The HTTP/2 path prefix of every method of `service`."""
        return f"/{self.services[service]}/"

    def path(self, service: str, method: str) -> str:
        return f"{self.prefix(service)}{method}"

    def callers_of(self, service: str) -> dict[str, list[str]]:
        """Caller identity -> the method paths of `service` it may call (sorted)."""
        result: dict[str, set[str]] = {}
        for call in self.calls:
            if call.service == service:
                paths = result.setdefault(call.caller, set())
                paths.update(self.path(service, method) for method in call.methods)
        return {caller: sorted(paths) for caller, paths in sorted(result.items())}

    def edge_methods(self, service: str) -> dict[str, list[str]]:
        """Method path of `service` -> the roles that may call it through the edge."""
        result: dict[str, set[str]] = {}
        for role, by_service in self.edge.roles.items():
            for method in by_service.get(service, ()):
                result.setdefault(self.path(service, method), set()).add(role)
        return {path: sorted(roles) for path, roles in sorted(result.items())}

    def edge_rules(self, service: str) -> list[tuple[list[str], list[str]]]:
        """(roles, method paths) groups of `service`: the methods each set of roles shares."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for path, roles in self.edge_methods(service).items():
            groups.setdefault(tuple(roles), []).append(path)
        return [(list(roles), paths) for roles, paths in sorted(groups.items())]

    def role_paths(self) -> dict[str, list[str]]:
        """Role -> every method path it may call through the edge (sorted)."""
        return {
            role: sorted(
                self.path(service, method)
                for service, methods in by_service.items()
                for method in methods
            )
            for role, by_service in sorted(self.edge.roles.items())
        }


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AllowListError(f"{where}: expected a list of strings")
    return tuple(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AllowListError(f"{where}: expected a mapping")
    return value


def parse(document: Any) -> AllowList:
    """Builds an AllowList from the loaded YAML, checking its shape."""
    root = _mapping(document, "allow-list")
    services = {str(k): str(v) for k, v in _mapping(root.get("services"), "services").items()}
    calls = []
    for index, entry in enumerate(root.get("calls") or []):
        entry = _mapping(entry, f"calls[{index}]")
        calls.append(
            ServiceCall(
                caller=str(entry.get("from", "")),
                service=str(entry.get("to", "")),
                methods=_strings(entry.get("methods"), f"calls[{index}].methods"),
            )
        )
    edge = _mapping(root.get("edge"), "edge")
    jwt = _mapping(edge.get("jwt"), "edge.jwt")
    cors = _mapping(edge.get("cors"), "edge.cors")
    roles = {
        str(role): {
            str(service): _strings(methods, f"edge.roles.{role}.{service}")
            for service, methods in _mapping(by_service, f"edge.roles.{role}").items()
        }
        for role, by_service in _mapping(edge.get("roles"), "edge.roles").items()
    }
    return AllowList(
        services=services,
        calls=tuple(calls),
        edge=EdgePolicy(
            identity=str(edge.get("identity", "edge")),
            issuer=str(jwt.get("issuer", "")),
            audiences=_strings(jwt.get("audiences"), "edge.jwt.audiences"),
            jwks_uri=str(jwt.get("jwks_uri", "")),
            cors=Cors(
                allowed_origins=_strings(cors.get("allowed_origins"), "edge.cors.allowed_origins"),
                allowed_headers=_strings(cors.get("allowed_headers"), "edge.cors.allowed_headers"),
                exposed_headers=_strings(cors.get("exposed_headers"), "edge.cors.exposed_headers"),
                max_age_seconds=int(cors.get("max_age_seconds", 86400)),
            ),
            roles=roles,
        ),
        internal_only={
            str(service): _strings(methods, f"internal_only.{service}")
            for service, methods in _mapping(
                root.get("internal_only") or {}, "internal_only"
            ).items()
        },
        affinity={
            str(k): str(v) for k, v in _mapping(root.get("affinity") or {}, "affinity").items()
        },
    )


def load(path: Path | None = None) -> AllowList:
    """The allow-list at `path`, or where the settings say (TELEMESH_ALLOWLIST)."""
    chosen = path if path is not None else load_settings(MeshSettings).allowlist
    return parse(yaml.safe_load(chosen.read_text()))


def contract_methods(services: Mapping[str, str]) -> dict[str, list[str]]:
    """Short service name -> its method names, from the generated descriptors."""
    result = {}
    for name, full_name in services.items():
        package, _, service = full_name.rpartition(".")
        module = importlib.import_module(f"{package}.{name}_pb2")
        result[name] = [
            method.name for method in module.DESCRIPTOR.services_by_name[service].methods
        ]
    return result


def problems(allowlist: AllowList, contract: Mapping[str, Sequence[str]]) -> list[str]:
    """Everything wrong with `allowlist` against `contract` (service -> method names)."""
    found: list[str] = []
    known = set(allowlist.services)

    def check(service: str, methods: Sequence[str], where: str) -> None:
        if service not in known:
            found.append(f"{where}: unknown service {service!r}")
            return
        for method in methods:
            if method not in contract.get(service, ()):
                found.append(f"{where}: {service} has no method {method!r}")

    for call in allowlist.calls:
        where = f"calls {call.caller} -> {call.service}"
        if call.caller not in known:
            found.append(f"{where}: unknown caller {call.caller!r}")
        check(call.service, call.methods, where)
    for role, by_service in allowlist.edge.roles.items():
        if role not in USER_ROLES:
            found.append(
                f"edge.roles: {role!r} is not a user role ({', '.join(sorted(USER_ROLES))})"
            )
        for service, methods in by_service.items():
            check(service, methods, f"edge.roles.{role}")
    for service, methods in allowlist.internal_only.items():
        check(service, methods, "internal_only")
    for service, header in allowlist.affinity.items():
        if service not in known or not header.islower():
            found.append(
                f"affinity: {service!r} -> {header!r} needs a known service, lower-case header"
            )
    # Every method is placed: reachable through the edge, or internal on purpose.
    for service in sorted(known):
        exposed = {path.rsplit("/", 1)[1] for path in allowlist.edge_methods(service)}
        internal = set(allowlist.internal_only.get(service, ()))
        for method in contract.get(service, ()):
            if method in exposed and method in internal:
                found.append(f"{service}.{method}: both in edge.roles and internal_only")
            elif method not in exposed and method not in internal:
                found.append(f"{service}.{method}: neither in edge.roles nor internal_only")
    return found
