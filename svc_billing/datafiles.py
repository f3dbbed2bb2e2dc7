"""Reading the billing service's data files (coding rules, fee schedule) and reporting
what is wrong with one at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class DataFileError(ValueError):
    """A data file is missing, does not parse, or breaks its schema; the message says
    which file and where."""


class FileModel(BaseModel):
    """Base of the data files' schemas: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_data_file(path: Path) -> Any:
    """The content of a YAML (`.yaml`, `.yml`) or JSON (`.json`) file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataFileError(f"{path}: does not parse: {exc}") from None
    raise DataFileError(f"{path}: expected a .yaml, .yml or .json file")


def parse_data_file(path: Path, model: type[M]) -> M:
    """The file at `path`, validated by `model`."""
    content = read_data_file(path)
    try:
        return model.model_validate(content)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise DataFileError(f"{path}: {problems}") from None
