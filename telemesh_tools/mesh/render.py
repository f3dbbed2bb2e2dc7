"""Regenerating mesh/ from the allow-list, and telling which rendered files are stale.

Rendered: mesh/local/*.yaml (the Envoy configs `telemesh up` runs) and
mesh/istio/base/*.yaml (the Kubernetes and Istio base manifests). The overlays in
mesh/istio/overlays/ are written by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from telemesh_tools.mesh import envoy, istio
from telemesh_tools.mesh.allowlist import REPO, AllowList


class _Dumper(yaml.SafeDumper):
    """Writes every repeated object out in full: no YAML anchors in rendered files."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


def dump_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=100)


def rendered_files(allowlist: AllowList) -> dict[str, str]:
    """Path relative to the repository -> the text it should hold."""
    files: dict[str, str] = {}
    for name, config in envoy.render_all(allowlist).items():
        files[f"mesh/local/{name}.yaml"] = envoy.HEADER + dump(config)
    for name, documents in istio.render_base(allowlist).items():
        text = dump(documents[0]) if name == "kustomization.yaml" else dump_all(documents)
        files[f"mesh/istio/base/{name}"] = istio.HEADER + text
    return files


def _stale(files: dict[str, str], root: Path) -> list[str]:
    """Of `files` (rendered), those missing or different under `root`; then leftovers."""
    stale = []
    for relative, text in files.items():
        path = root / relative
        if not path.exists() or path.read_text() != text:
            stale.append(relative)
    for folder in ("mesh/local", "mesh/istio/base"):
        for path in sorted((root / folder).glob("*.yaml")):
            relative = str(path.relative_to(root))
            if relative not in files:
                stale.append(relative)  # left over from a service or file no longer rendered
    return stale


def stale_files(allowlist: AllowList, root: Path = REPO) -> list[str]:
    """Rendered files that are missing or differ from what the allow-list gives."""
    return _stale(rendered_files(allowlist), root)


def write(allowlist: AllowList, root: Path = REPO) -> list[str]:
    """Writes every rendered file that changed; deletes leftovers; returns what changed."""
    files = rendered_files(allowlist)
    changed = _stale(files, root)
    for relative in changed:
        path = root / relative
        if relative in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[relative])
        else:
            path.unlink()
    return changed
