"""What the security tests share: all four services in one stack."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.support.harness import Stack
from tests.support.signaling import signaling_stack


@contextlib.contextmanager
def four_services(home: Path, backend: str, **env: str) -> Iterator[Stack]:
    """session, consent, signaling (with a coturn) and billing processes."""
    with signaling_stack(home, backend, **env) as signaling:
        signaling.stack.start("billing")
        yield signaling.stack
