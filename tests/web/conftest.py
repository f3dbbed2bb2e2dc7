"""The web tests share one `telemesh up` and one web server (http://localhost:5173)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telemesh_tools.stack.process import ManagedProcess
from tests.support.harness import MeshUp
from tests.web.support import build_web, missing_tools, start_webapp

# The pre-call check measures for 4 s by default; a second shows the same path.
MESH_ENV = {"TELEMESH_SIGNALING_PRECALL_SECONDS": "1"}


@pytest.fixture(scope="package")
def tools() -> None:
    """Node, web/node_modules and Chromium: a failure, not a skip, when missing."""
    problem = missing_tools()
    if problem:
        pytest.fail(f"the web tests cannot run: {problem}")


@pytest.fixture(scope="package")
def web_mesh(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshUp]:
    mesh = MeshUp.start(tmp_path_factory.mktemp("web-home"), **MESH_ENV)
    try:
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture(scope="package")
def web_dist(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web-dist")
    build_web(out)
    return out


@pytest.fixture(scope="package")
def webapp(web_mesh: MeshUp, web_dist: Path) -> Iterator[ManagedProcess]:
    process = start_webapp(web_mesh.home, web_dist)
    try:
        yield process
    finally:
        process.stop()
