"""The consent service once per test module and backend (tests use their own patients),
with the session service that knows patients and care relationships."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.harness import Stack

# Expiries are recorded quickly here so that a test can wait for one.
CONSENT_ENV = {"TELEMESH_CONSENT_EXPIRY_SWEEP_SECONDS": "0.2"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def consent_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("consent"), request.param, CONSENT_ENV)
    try:
        stack.start("session", "consent")
        yield stack
    finally:
        stack.close()
