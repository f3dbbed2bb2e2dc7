"""Who may call each RPC, from the mesh's one allow-list (mesh/allowlist.yaml).

This is the outer wall the edge and the sidecars enforce: end-user roles through the
edge, service identities over mTLS, and the methods no end user reaches at all. The
services' own rules narrow it further; those refusals are the RPCs' documented errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from telemesh_tools.mesh.allowlist import AllowList


@dataclass(frozen=True)
class Callers:
    """The callers the allow-list lets through to one RPC."""

    edge_roles: tuple[str, ...]  # end-user roles through the edge, sorted
    services: tuple[str, ...]  # service identities (mTLS), sorted
    internal_only: bool  # listed under `internal_only`: never through the edge

    @property
    def anyone(self) -> bool:
        return bool(self.edge_roles or self.services)


NOBODY = Callers((), (), False)


def callers(allowlist: AllowList) -> dict[str, Callers]:
    """Method path (`/package.Service/Method`) -> who may call it."""
    found: dict[str, Callers] = {}
    for short in sorted(allowlist.services):
        roles = allowlist.edge_methods(short)
        services: dict[str, set[str]] = {}
        for caller, paths in allowlist.callers_of(short).items():
            for path in paths:
                services.setdefault(path, set()).add(caller)
        internal = {allowlist.path(short, m) for m in allowlist.internal_only.get(short, ())}
        for path in sorted(set(roles) | set(services) | internal):
            found[path] = Callers(
                edge_roles=tuple(sorted(roles.get(path, ()))),
                services=tuple(sorted(services.get(path, ()))),
                internal_only=path in internal,
            )
    return found
