"""Which calls may be sent again after UNAVAILABLE, and how long to wait in between.

A call is idempotent when the contract says so (`option idempotency_level =
NO_SIDE_EFFECTS` or `IDEMPOTENT` on the RPC, read from the generated descriptors) or when
it is a mutation that carries a `request_id`: the services answer a repeated `request_id`
with the first answer. Nothing else is retried: `CheckConsent`, for example, is audited on
every call, and a mutation without a `request_id` might happen twice.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message

SAFE_LEVELS = frozenset(
    {descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS, descriptor_pb2.MethodOptions.IDEMPOTENT}
)


@dataclass(frozen=True)
class Retry:
    """At most `attempts` tries of an idempotent call that failed with UNAVAILABLE, all
    within the call's one deadline; exponential backoff with jitter in between."""

    attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first): between half
        of and the whole bound, which grows by `multiplier` up to `max_backoff`."""
        growth = self.multiplier ** min(retry - 1, 32)  # capped: no float overflow
        bound = min(self.max_backoff, self.initial_backoff * growth)
        return random.uniform(bound / 2, bound)


NO_RETRY = Retry(attempts=1)


@functools.cache
def _safe_method(method: str) -> bool:
    """Whether `/package.Service/Method` is marked NO_SIDE_EFFECTS or IDEMPOTENT."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return False
    return found.GetOptions().idempotency_level in SAFE_LEVELS


def is_idempotent(method: str, request: object) -> bool:
    """Whether `request` may be sent to `method` again after UNAVAILABLE."""
    fields = request.DESCRIPTOR.fields_by_name if isinstance(request, Message) else {}
    if "request_id" in fields and getattr(request, "request_id"):  # noqa: B009
        return True  # a mutation the service deduplicates on its request_id
    return _safe_method(method)
