"""Fixtures of the billing tests: one billing service per backend for a module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.billing import Billing
from tests.support.harness import Stack

# The per-payer mapping the service tests run with (see test_payer_mapping...).
PAYER_RULE_SETS = "acme-health=cpt-telemedicine"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def billing_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """`python -m svc_billing` (and the session service, which keeps the access log) once
    per module and backend; tests use fresh visit ids."""
    stack = Stack(
        tmp_path_factory.mktemp("billing"),
        request.param,
        {"TELEMESH_BILLING_PAYER_RULE_SETS": PAYER_RULE_SETS},
    )
    try:
        # The session service keeps the access log every read of a charge goes to.
        stack.start("session", "billing")
        yield stack
    finally:
        stack.close()


@pytest.fixture
async def billing(billing_stack: Stack) -> AsyncIterator[Billing]:
    async with billing_stack.channel("billing") as channel:
        yield Billing(billing_stack, channel)
