"""The replay buffer and the rate limit, in memory (the services use them as is)."""

from __future__ import annotations

import time

import pytest

from svc_signaling.event_log import EventLog
from svc_signaling.ice_servers import turn_password
from svc_signaling.rate_limit import TokenBucket
from telemesh.signaling.v1 import signaling_pb2


def _event() -> signaling_pb2.JoinRoomResponse:
    return signaling_pb2.JoinRoomResponse(keepalive=signaling_pb2.Keepalive())


def test_events_are_numbered_and_replayed_after_the_last_one_seen() -> None:
    log = EventLog(capacity=4)
    for _ in range(3):
        log.append(_event())
    fresh = log.replay_after(0)
    assert (fresh.start_after, fresh.events, fresh.gap) == (3, [], False)
    resumed = log.replay_after(1)
    assert [e.sequence for e in resumed.events] == [2, 3]
    assert not resumed.gap


def test_a_resume_older_than_the_buffer_is_a_gap() -> None:
    log = EventLog(capacity=4)
    for _ in range(10):
        log.append(_event())
    replay = log.replay_after(2)
    assert replay.gap
    assert [e.sequence for e in replay.events] == [7, 8, 9, 10]
    assert replay.start_after == 6
    assert log.events_after(2) is None, "a live stream that far behind must resume"
    assert [e.sequence for e in log.events_after(8) or []] == [9, 10]


def test_a_resume_from_before_a_restart_continues_the_clients_numbering() -> None:
    log = EventLog(capacity=4)  # a new process: the old log is gone
    log.append(_event())  # sent to this participant before they came back
    replay = log.replay_after(57)
    assert replay.gap
    assert replay.start_after == 57
    assert [e.sequence for e in replay.events] == [58]
    assert log.append(_event()).sequence == 59


def test_the_bucket_allows_a_burst_then_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 100.0
    monkeypatch.setattr(time, "monotonic", lambda: now)
    bucket = TokenBucket(rate_per_second=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now += 0.25  # half a token
    assert not bucket.take()
    now += 0.25  # a whole one
    assert [bucket.take(), bucket.take()] == [True, False]
    now += 60.0  # refills up to the burst, no further
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_turn_passwords_follow_the_coturn_rest_scheme() -> None:
    # base64(HMAC-SHA1(secret, username)), as coturn's `use-auth-secret` computes it.
    assert turn_password("secret", "1000600:p-1") == "YE4Y5OiYylbu9XvDL1/kehjUYEI="
