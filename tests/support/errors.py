"""Failed calls in tests: `refused` awaits a call that must fail; the details it carries
are read with `telemesh.errors.reason_of` and `field_violations`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest

from telemesh.errors import field_violations


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error `call` ends with (the test fails if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def bad_fields(error: grpc.aio.AioRpcError) -> set[str]:
    """The names of the fields a failed call says are bad."""
    return {violation.field for violation in field_violations(error)}


def violations_of(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """Each bad field with what is wrong with it."""
    return {violation.field: violation.description for violation in field_violations(error)}
