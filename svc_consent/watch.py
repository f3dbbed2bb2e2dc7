"""The WatchConsentChanges stream: changes in sequence order, as soon as they commit.

The first response says where the stream starts; after that, every change (read from
the versions table, so a resumed stream misses nothing) and, whenever nothing changed
for the heartbeat interval, a heartbeat that tells the consumer the stream is alive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from svc_consent import convert, ledger
from svc_consent.change_feed import ChangeFeed
from svc_consent.requests import WatchRequest
from telemesh.consent.v1 import consent_pb2
from telemesh.db import Database
from telemesh.errors import FailedPrecondition

PAGE = 200


async def stream(
    db: Database, feed: ChangeFeed, request: WatchRequest
) -> AsyncIterator[consent_pb2.WatchConsentChangesResponse]:
    async with db.read() as session:
        head = await ledger.head_change_sequence(session)
    position = head if request.after_sequence is None else request.after_sequence
    if position > head:
        raise FailedPrecondition(
            "WATCH_POSITION_AHEAD", f"after_sequence {position} is past the newest change {head}"
        )
    yield consent_pb2.WatchConsentChangesResponse(through_sequence=position)
    while not feed.closed:
        ticket = feed.ticket()
        async with db.read() as session:
            rows, head = await ledger.changes_after(session, position, request.patient_id, PAGE)
        for row in rows:
            yield consent_pb2.WatchConsentChangesResponse(
                change=convert.change(row), through_sequence=row.change_sequence
            )
        if len(rows) == PAGE:
            position = rows[-1].change_sequence
            continue
        position = max(position, head)
        while not await feed.wait(ticket, request.heartbeat_seconds):
            yield consent_pb2.WatchConsentChangesResponse(through_sequence=position)
