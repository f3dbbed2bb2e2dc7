"""The mesh tests share one `telemesh up` (real Envoys, real services) for the package.

A long server stream through the edge is opened as soon as the stack is up, so the
test that checks it is still open past 60 seconds waits only for what the other tests
have not already spent. That test and the `telemesh down` test run last.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mesh.long_stream import OpenStream
from tests.support.grpcweb import node_missing
from tests.support.mesh import MeshUnderTest

MESH_TESTS = "tests/mesh/"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mesh_last(rank): run after the other mesh tests, in rank order"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Moves `mesh_last` tests behind the other mesh tests (stable otherwise)."""
    positions = [i for i, item in enumerate(items) if item.nodeid.startswith(MESH_TESTS)]
    mesh_items = [items[i] for i in positions]

    def rank(item: pytest.Item) -> int:
        marker = item.get_closest_marker("mesh_last")
        return int(marker.args[0]) if marker else 0

    for position, item in zip(positions, sorted(mesh_items, key=rank), strict=True):
        items[position] = item


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshUnderTest]:
    """`telemesh up` in a fresh home; stopped by `telemesh down` (or killed) at the end."""
    stack = MeshUnderTest.start(tmp_path_factory.mktemp("mesh-home"))
    try:
        yield stack
    finally:
        if stack.process.running:
            stack.down()
        stack.stop()


@pytest.fixture(scope="package")
def long_stream(mesh: MeshUnderTest) -> Iterator[OpenStream | None]:
    """Opened with the stack (the stack tests use it), checked by the last test."""
    if node_missing():
        yield None  # the long-stream test skips and says why
        return
    stream = OpenStream.open(mesh, mesh.home / "long-stream.jsonl")
    try:
        yield stream
    finally:
        stream.close()
