"""Validating manifests as a cluster would: Istio kinds against Istio's own CRD schemas,
core Kubernetes kinds with `kubernetes-validate`.

Istio's schemas are the `openAPIV3Schema` of each version in its
customresourcedefinitions.gen.yaml (kept in ../shared/schemas/istio/). They are checked
with `jsonschema`; like the API server with strict field validation, an object schema
that does not preserve unknown fields rejects fields it does not declare, so a
misspelled field fails instead of being dropped. CEL rules (`x-kubernetes-validations`)
are not evaluated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from telemesh_tools.mesh.allowlist import REPO

ISTIO_CRDS = REPO.parent / "shared" / "schemas" / "istio" / "customresourcedefinitions.gen.yaml"
KUBERNETES_VERSION = "1.33.0"


def is_istio(resource: dict[str, Any]) -> bool:
    return str(resource.get("apiVersion", "")).split("/")[0].endswith("istio.io")


def _strict(schema: Any) -> Any:
    """`schema` with undeclared fields refused wherever unknown fields are not preserved."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


class IstioSchemas:
    """The schema of every served (group, version, kind) in an Istio CRD file."""

    def __init__(self, crds: Iterable[dict[str, Any]]) -> None:
        self.validators: dict[tuple[str, str, str], jsonschema.protocols.Validator] = {}
        for crd in crds:
            spec = crd.get("spec", {})
            for version in spec.get("versions", []):
                if not version.get("served"):
                    continue
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                key = (spec["group"], version["name"], spec["names"]["kind"])
                self.validators[key] = jsonschema.Draft7Validator(schema)

    @classmethod
    def load(cls, path: Path = ISTIO_CRDS) -> IstioSchemas:
        # libyaml's loader: the file is almost a megabyte.
        return cls(doc for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) if doc)

    def errors(self, resource: dict[str, Any]) -> list[str]:
        group, _, version = str(resource.get("apiVersion", "")).partition("/")
        key = (group, version, str(resource.get("kind")))
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        validator = self.validators.get(key)
        if validator is None:
            return [f"{name}: {resource.get('apiVersion')} {key[2]} is not a served Istio kind"]
        problems = (
            [f"{name}: metadata.name is required"]
            if not resource.get("metadata", {}).get("name")
            else []
        )
        body = {k: v for k, v in resource.items() if k not in ("apiVersion", "kind", "metadata")}
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(part) for part in error.absolute_path) or "(top)"
            problems.append(f"{name}: {where}: {error.message}")
        return problems


def kubernetes_errors(resource: dict[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """What `kubernetes-validate` (strict: no unknown fields) finds in a core resource."""
    name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path) or "(top)"
        return [f"{name}: {where}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{name}: no Kubernetes {version} schema: {error}"]
    return []


def errors(resources: Iterable[dict[str, Any]], istio: IstioSchemas) -> list[str]:
    """Every problem in `resources`: Istio kinds by CRD schema, the rest by Kubernetes'."""
    found: list[str] = []
    for resource in resources:
        found.extend(istio.errors(resource) if is_istio(resource) else kubernetes_errors(resource))
    return found
