"""One signaling stack (session, consent, signaling, coturn) per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from tests.support.flows import Flows
from tests.support.signaling import SignalingStack, signaling_stack


@pytest.fixture(scope="module")
def sig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignalingStack]:
    with signaling_stack(tmp_path_factory.mktemp("home")) as stack:
        yield stack


@pytest.fixture
async def flows(sig: SignalingStack) -> AsyncIterator[Flows]:
    flows = Flows(sig.stack)
    yield flows
    await flows.close()


@pytest.fixture
async def channel(sig: SignalingStack) -> AsyncIterator[grpc.aio.Channel]:
    channel = sig.stack.channel("signaling")
    yield channel
    await channel.close()
