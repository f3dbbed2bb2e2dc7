"""The mesh tests share one `telemesh up` (real Envoys, real services) for the package.

A long server stream through the edge is opened as soon as the stack is up (the
package-scoped `long_stream`, which the modules that use the mesh ask for), so the test
that checks it is still open past 60 seconds waits only for what the other tests have
not already spent. The tests pass in any order: none stops the shared stack (the
`telemesh down` test brings up a mesh of its own).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mesh.long_stream import OpenStream
from tests.support.grpcweb import node_missing
from tests.support.mesh import MeshUnderTest


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshUnderTest]:
    """`telemesh up` in a fresh home; stopped by `telemesh down` (or killed) at the end."""
    stack = MeshUnderTest.start(tmp_path_factory.mktemp("mesh-home"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="package")
def long_stream(mesh: MeshUnderTest) -> Iterator[OpenStream | None]:
    """Opened with the stack (the modules that use the mesh ask for it), checked by
    test_streams.py."""
    if node_missing():
        yield None  # the long-stream test skips and says why
        return
    stream = OpenStream.open(mesh, mesh.home / "long-stream.jsonl")
    try:
        yield stream
    finally:
        stream.close()
