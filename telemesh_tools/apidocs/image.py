"""The contract as a `FileDescriptorSet`, built by buf with source info (the comments)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

# Only the contract's own files are documented; imports (well-known types) are not.
CONTRACT_PREFIX = "telemesh/"


class ImageError(RuntimeError):
    """buf could not build the protos."""


def buf_binary() -> str:
    """The buf of this virtual environment (the `buf-bin` wheel), else the one on PATH."""
    beside = Path(sys.executable).with_name("buf")
    if beside.exists():
        return str(beside)
    found = shutil.which("buf")
    if found is None:
        raise ImageError("buf not found: run `make setup`")
    return found


def build(repo: Path) -> descriptor_pb2.FileDescriptorSet:
    """Every file of the buf module in `repo`, with source info, without imports."""
    result = subprocess.run(
        [
            buf_binary(),
            "build",
            "--exclude-imports",
            "--as-file-descriptor-set",
            "-o",
            "-#format=binpb",
        ],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageError(f"buf build failed: {result.stderr.decode(errors='replace')}")
    image = descriptor_pb2.FileDescriptorSet.FromString(result.stdout)
    files = sorted(
        (file for file in image.file if file.name.startswith(CONTRACT_PREFIX)),
        key=lambda file: file.name,
    )
    return descriptor_pb2.FileDescriptorSet(file=files)
