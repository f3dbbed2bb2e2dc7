"""One session service per backend for the module; each test makes its own people."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.flows import Flows
from tests.support.harness import Stack


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def session_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("home"), request.param)
    try:
        stack.start("session")
        yield stack
    finally:
        stack.close()


@pytest.fixture
async def flows(session_stack: Stack) -> AsyncIterator[Flows]:
    flows = Flows(session_stack)
    yield flows
    await flows.close()
