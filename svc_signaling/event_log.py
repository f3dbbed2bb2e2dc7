"""One participant's numbered events in a room, with a bounded replay buffer.

Every event meant for a participant is appended to their log, whether or not they are
connected right now, and numbered from 1. A client that lost its stream resumes after
the last number it saw and gets the events since, as long as the buffer still holds
them; otherwise the resume reports a gap (the client restarts ICE).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from telemesh.signaling.v1 import signaling_pb2

# The highest number a client may resume after. Sequences are int64 on the wire; a
# resume renumbers the log to continue after the client's number, so a number near
# 2^63 would overflow the next event and break the log for good (and with it every
# event the other participant sends). 2^53 - 1 also stays exact in a JavaScript number.
MAX_SEQUENCE = 2**53 - 1


@dataclass(frozen=True)
class Replay:
    """Where a resumed stream starts: the events to send, and whether some were lost."""

    start_after: int
    events: list[signaling_pb2.JoinRoomResponse]
    gap: bool


class EventLog:
    def __init__(self, capacity: int) -> None:
        self.last_sequence = 0
        self._events: deque[signaling_pb2.JoinRoomResponse] = deque(maxlen=capacity)

    def append(self, event: signaling_pb2.JoinRoomResponse) -> signaling_pb2.JoinRoomResponse:
        """Numbers `event` (in place) and keeps it for replay."""
        self.last_sequence += 1
        event.sequence = self.last_sequence
        self._events.append(event)
        return event

    def events_after(self, delivered: int) -> list[signaling_pb2.JoinRoomResponse] | None:
        """Events after `delivered` for a live stream; None when some already fell out
        of the buffer (the stream is too far behind)."""
        if delivered >= self.last_sequence:
            return []
        missing = self.last_sequence - delivered
        if missing > len(self._events):
            return None
        newest: list[signaling_pb2.JoinRoomResponse] = []
        for event in reversed(self._events):
            if len(newest) == missing:
                break
            newest.append(event)
        newest.reverse()
        return newest

    def replay_after(self, resume_after: int) -> Replay:
        """The events after `resume_after`.

        0 is a fresh client: nothing is replayed. A number beyond the log's last one
        comes from before a restart of this process (or another replica): the log is
        renumbered to continue after it, so the client's numbering never goes back,
        and everything buffered since is replayed with a gap. Callers check the number
        against MAX_SEQUENCE first (ValueError otherwise, before anything changes).
        """
        if resume_after > MAX_SEQUENCE:
            raise ValueError(f"resume_after must be at most {MAX_SEQUENCE}")
        if resume_after <= 0:
            return Replay(self.last_sequence, [], False)
        if resume_after > self.last_sequence:
            shift = resume_after - (self.last_sequence - len(self._events))
            for event in self._events:
                event.sequence += shift
            self.last_sequence += shift
            return Replay(resume_after, list(self._events), True)
        oldest = self.last_sequence - len(self._events) + 1
        if resume_after + 1 < oldest:
            return Replay(oldest - 1, list(self._events), True)
        kept = [event for event in self._events if event.sequence > resume_after]
        return Replay(resume_after, kept, False)
