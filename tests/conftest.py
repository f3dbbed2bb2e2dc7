"""Fixtures shared by every test: a state folder, tokens, databases and service stacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.harness import Stack, Tokens


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def tokens(home: Path) -> Tokens:
    return Tokens(home)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    value: str = request.param
    return value


@pytest.fixture
def make_stack(home: Path) -> Iterator[Callable[..., Stack]]:
    """Starts services for a test: `make_stack("postgres", "session", "consent")`."""
    stacks: list[Stack] = []

    def make(backend: str, *services: str, **env: str) -> Stack:
        stack = Stack(home, backend, env)
        stacks.append(stack)
        return stack.start(*services)

    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture
def artifacts() -> Path:
    """Where tests keep what a human may want to look at (screenshots, pages)."""
    path = Path(__file__).resolve().parent.parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path
