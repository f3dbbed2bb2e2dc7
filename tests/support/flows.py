"""The visit steps of telemesh_tools.demo.steps against a test's Stack of service processes."""

from __future__ import annotations

from telemesh.timestamps import timestamp as ts
from telemesh_tools.demo.steps import (
    ALL_WEEK,
    CONSENT_TEXT,
    Metadata,
    Visit,
    VisitSteps,
    rid,
)
from tests.support.harness import Stack

__all__ = ["ALL_WEEK", "CONSENT_TEXT", "Flows", "Metadata", "Visit", "rid", "ts"]


class Flows(VisitSteps):
    """Visit steps straight to each service of a running test stack."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.channel, stack.tokens.issuer)
        self.stack = stack
        self.tokens = stack.tokens
