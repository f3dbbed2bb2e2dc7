"""A small kustomize: builds mesh/istio's base and overlays the way `kustomize build` does.

There is no kustomize binary on these machines and no PyPI package that builds
kustomizations (the ones named kustomize are a Python manifest DSL, bindings that need
Python 3.14, or wrappers that call the binary), so this module implements the part of
kustomize that mesh/istio uses, and refuses anything else loudly rather than ignore it:

- `resources`: YAML files and folders holding a kustomization.yaml, in order;
- `namespace`: sets metadata.namespace of namespaced resources;
- `images`: `name` -> `newName` / `newTag` / `digest` in every container image;
- `replicas`: `name` -> `count` for Deployments and StatefulSets;
- `patches`: from `path` or inline `patch`, with an optional `target` (kind, name,
  namespace, group, version); a patch that is a YAML list is a JSON 6902 patch (`add`,
  `replace`, `remove`, `test`), a mapping is a strategic merge patch (maps merged
  recursively, `null` deletes, lists of containers, volumes, env, ports, ... merged by
  their key, `$patch: delete` removes an element or the whole resource).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
# Strategic merge keys of the list fields mesh/istio uses, as in the Kubernetes API.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "envFrom": None,
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "tolerations": None,
    "topologySpreadConstraints": None,
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class KustomizeError(ValueError):
    """A kustomization this builder cannot build, or a patch that does not apply."""


def _load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _identity(resource: dict[str, Any]) -> str:
    meta = resource.get("metadata", {})
    return f"{resource.get('kind')}/{meta.get('namespace', '')}/{meta.get('name')}"


def build(folder: Path) -> list[dict[str, Any]]:
    """The resources that `kustomize build folder` prints, in order."""
    path = folder / "kustomization.yaml"
    if not path.exists():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{path}: fields this builder does not support: {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        resources.extend(build(target) if target.is_dir() else _load_documents(target))
    seen: set[str] = set()
    for resource in resources:
        key = _identity(resource)
        if key in seen:
            raise KustomizeError(f"{path}: {key} appears twice")
        seen.add(key)
    for patch in kustomization.get("patches", []):
        resources = _apply_patch_entry(folder, patch, resources)
    if "namespace" in kustomization:
        for resource in resources:
            if resource.get("kind") not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_images(resources, image)
    for replica in kustomization.get("replicas", []):
        _set_replicas(path, resources, replica)
    return resources


# --- transformers ---------------------------------------------------------------------


def _containers(resource: dict[str, Any]) -> Iterable[dict[str, Any]]:
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
    for field in ("containers", "initContainers"):
        yield from pod.get(field, [])


def _split_image(image: str) -> tuple[str, str]:
    """(name, the rest: `:tag` or `@digest` or empty)."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, f"@{digest}"
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _set_images(resources: list[dict[str, Any]], image: dict[str, Any]) -> None:
    for resource in resources:
        for container in _containers(resource):
            name, rest = _split_image(str(container.get("image", "")))
            if name != image["name"]:
                continue
            if "digest" in image:
                rest = f"@{image['digest']}"
            elif "newTag" in image:
                rest = f":{image['newTag']}"
            container["image"] = f"{image.get('newName', name)}{rest}"


def _set_replicas(path: Path, resources: list[dict[str, Any]], replica: dict[str, Any]) -> None:
    matched = False
    for resource in resources:
        if (
            resource.get("kind") in ("Deployment", "StatefulSet")
            and resource.get("metadata", {}).get("name") == replica["name"]
        ):
            resource["spec"]["replicas"] = int(replica["count"])
            matched = True
    if not matched:
        raise KustomizeError(f"{path}: replicas: no Deployment named {replica['name']!r}")


# --- patches --------------------------------------------------------------------------


def _matches(resource: dict[str, Any], target: dict[str, Any]) -> bool:
    meta = resource.get("metadata", {})
    group, _, version = str(resource.get("apiVersion", "")).rpartition("/")
    checks = {
        "kind": resource.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "group": group,
        "version": version,
    }
    unknown = set(target) - set(checks)
    if unknown:
        raise KustomizeError(
            f"patch target fields this builder does not support: {sorted(unknown)}"
        )
    return all(checks[key] == value for key, value in target.items())


def _apply_patch_entry(
    folder: Path, entry: dict[str, Any], resources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if "path" in entry:
        patch = yaml.safe_load((folder / entry["path"]).read_text())
        where = str(folder / entry["path"])
    elif "patch" in entry:
        patch = yaml.safe_load(entry["patch"])
        where = f"{folder}/kustomization.yaml (inline patch)"
    else:
        raise KustomizeError(f"{folder}: a patch needs `path` or `patch`")
    target = entry.get("target")
    if isinstance(patch, list):
        if target is None:
            raise KustomizeError(f"{where}: a JSON 6902 patch needs a target")
        selected = [r for r in resources if _matches(r, target)]
        if not selected:
            raise KustomizeError(f"{where}: no resource matches target {target}")
        for resource in selected:
            _json6902(resource, patch, where)
        return resources
    if not isinstance(patch, dict):
        raise KustomizeError(f"{where}: a patch is a mapping or a list")
    if target is None:
        target = {"kind": patch.get("kind"), "name": patch.get("metadata", {}).get("name")}
    selected = [r for r in resources if _matches(r, target)]
    if not selected:
        raise KustomizeError(f"{where}: no resource matches {target}")
    result = []
    for resource in resources:
        if resource in selected:
            if patch.get("$patch") == "delete":
                continue
            body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
            body.get("metadata", {}).pop("name", None)
            resource = strategic_merge(resource, body)
        result.append(resource)
    return result


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """`base` with strategic merge patch `patch` applied (a new object)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = _without_directives(value)
        return merged
    if isinstance(patch, list) and isinstance(base, list):
        key = _merge_key(field, base + patch)
        if key is None:
            return _without_directives(patch)
        merged_list = copy.deepcopy(base)
        for item in patch:
            position = next(
                (i for i, existing in enumerate(merged_list) if existing.get(key) == item.get(key)),
                None,
            )
            if item.get("$patch") == "delete":
                if position is not None:
                    merged_list.pop(position)
            elif position is None:
                merged_list.append(_without_directives(item))
            else:
                merged_list[position] = strategic_merge(merged_list[position], item)
        return merged_list
    return _without_directives(patch)


def _merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    if field == "ports":  # containerPort in pods, port in Services
        return "containerPort" if all("containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$patch")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return copy.deepcopy(value)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _json6902(resource: dict[str, Any], operations: list[dict[str, Any]], where: str) -> None:
    for operation in operations:
        op, parts = operation.get("op"), _pointer(str(operation.get("path", "")))
        parent: Any = resource
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = parts[-1]
            if op in ("add", "replace"):
                value = copy.deepcopy(operation["value"])
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    if op == "add":
                        parent.insert(index, value)
                    else:
                        parent[index] = value
                else:
                    if op == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = value
            elif op == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif op == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != operation["value"]:
                    raise KustomizeError(f"{where}: test failed at {operation['path']}")
            else:
                raise KustomizeError(f"{where}: JSON 6902 op {op!r} is not supported")
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise KustomizeError(
                f"{where}: {op} {operation.get('path')} does not apply to {_identity(resource)}"
            ) from error
