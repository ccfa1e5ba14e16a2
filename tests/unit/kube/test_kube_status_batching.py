"""Status reporting: coalesced per agent, unchanged statuses cost nothing, the rate cap holds."""

from __future__ import annotations

import pytest

from agent_runtime.kube.status import AgentStatus, StatusBatcher, TokenBucket, Tokens, rfc3339


def st(turns: int, phase: str = "Running", inp: int = 0) -> AgentStatus:
    return AgentStatus(phase, turns, Tokens(input=inp), 0.0)


def test_many_changes_of_one_agent_make_one_patch_with_the_latest() -> None:
    b = StatusBatcher(rate=100)
    for turns in range(50):
        b.observe("ns/a", st(turns))
    batch = b.take(now=0.0)
    assert batch == [("ns/a", st(49))]
    b.done("ns/a", st(49), ok=True)
    b.observe("ns/a", st(49))
    assert b.take(now=1.0) == []  # unchanged: nothing to send


def test_rate_cap_bounds_patches_per_second_for_1000_agents() -> None:
    b = StatusBatcher(rate=20, burst=20)
    sent = 0
    for second in range(10):
        for i in range(1000):
            b.observe(f"ns/a{i}", st(second))
        for tick in range(10):  # the shell asks ten times a second
            batch = b.take(now=second + tick / 10)
            for key, status in batch:
                b.done(key, status, ok=True)
            sent += len(batch)
    assert sent <= 20 * 10 + 20  # rate x seconds + one burst
    assert sent >= 20 * 10 - 20


def test_oldest_dirty_goes_first_and_every_agent_gets_its_turn() -> None:
    b = StatusBatcher(rate=2, burst=2)
    for i in range(6):
        b.observe(f"ns/a{i}", st(1))
    order = []
    t = 0.0
    while len(order) < 6:
        for key, status in b.take(now=t):
            order.append(key)
            b.done(key, status, ok=True)
        t += 0.5
    assert order == [f"ns/a{i}" for i in range(6)]


def test_failed_patch_is_retried_and_in_flight_not_sent_twice() -> None:
    b = StatusBatcher(rate=100)
    b.observe("ns/a", st(1))
    (key, status), = b.take(0.0)
    b.observe("ns/a", st(2))
    assert b.take(0.1) == []  # one patch per agent in flight
    b.done(key, status, ok=False)
    assert b.take(0.2) == [("ns/a", st(2))]


def test_change_during_flight_is_sent_after() -> None:
    b = StatusBatcher(rate=100)
    b.observe("ns/a", st(1))
    (key, status), = b.take(0.0)
    b.observe("ns/a", st(2))
    b.done(key, status, ok=True)
    assert b.take(0.1) == [("ns/a", st(2))]


def test_invalidate_resends_and_forget_drops() -> None:
    b = StatusBatcher(rate=100)
    b.observe("ns/a", st(1))
    for k, s in b.take(0.0):
        b.done(k, s, ok=True)
    b.invalidate("ns/a")  # someone overwrote our phase
    assert b.take(0.1) == [("ns/a", st(1))]
    b.done("ns/a", st(1), ok=True)
    b.observe("ns/b", st(1))
    b.forget("ns/b")
    assert b.take(0.2) == []
    b.done("ns/b", st(1), ok=True)  # a late answer for a forgotten agent is ignored
    assert "ns/b" not in b.sent


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert bucket.take(0.0, 100) == 5
    assert bucket.take(0.0, 1) == 0
    assert bucket.wait_s(0.0) == pytest.approx(0.1)
    assert bucket.take(0.35, 100) == 3
    assert bucket.take(100.0, 100) == 5  # never more than the burst
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


def test_fields_are_the_crd_shape() -> None:
    s = AgentStatus("Idle", 3, Tokens(input=100, output=20, cache_read=300, cache_write=100), 1_700_000_000.0)
    assert s.fields() == {
        "phase": "Idle", "turns": 3,
        "tokens": {"input": 100, "output": 20, "cacheRead": 300, "cacheWrite": 100},
        "cachedShare": 0.6, "lastActivity": "2023-11-14T22:13:20Z",
    }
    assert "lastActivity" not in AgentStatus("Running", 0, Tokens(), 0.0).fields()
    assert Tokens().cached_share() == 0.0
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
