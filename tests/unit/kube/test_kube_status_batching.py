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
    s = AgentStatus("Idle", 3, Tokens(input=100, output=20, cache_read=300, cache_write=100), 1_700_000_000.0,
                    compressions=2, cost_units=290)
    assert s.fields() == {
        "phase": "Idle", "turns": 3,
        "tokens": {"input": 100, "output": 20, "cacheRead": 300, "cacheWrite": 100},
        "cachedShare": 0.6, "lastActivity": "2023-11-14T22:13:20Z", "compressions": 2, "costUnits": 290,
    }
    assert "lastActivity" not in AgentStatus("Running", 0, Tokens(), 0.0).fields()
    assert Tokens().cached_share() == 0.0
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


def sent_once(b: StatusBatcher, key: str, status: AgentStatus, now: float = 0.0) -> None:
    b.observe(key, status)
    for k, s in b.take(now):
        b.done(k, s, ok=True)
    assert b.sent[key] == status


def test_transitions_go_before_activity_under_the_same_cap() -> None:
    b = StatusBatcher(rate=1, burst=1, hold_s=0.0)
    sent_once(b, "ns/busy", st(1))
    b.observe("ns/busy", st(2))  # activity only (turns)
    b.observe("ns/new", st(0))  # first report of an agent that arrived: a transition
    assert b.take(now=5.0) == [("ns/new", st(0))]
    b.done("ns/new", st(0), ok=True)
    assert b.take(now=5.5) == []  # the cap: one token per second, whatever the class
    assert b.take(now=6.0) == [("ns/busy", st(2))]


def test_a_phase_change_is_a_transition_and_outranks_queued_activity() -> None:
    b = StatusBatcher(rate=1, burst=1, hold_s=0.0)
    for key in ("ns/a", "ns/b"):
        sent_once(b, key, st(1), now=float(key == "ns/b"))
    b.observe("ns/a", st(2))  # activity, queued first
    b.observe("ns/b", st(1, phase="Idle"))  # phase change, queued later
    assert "ns/b" in b.transitions and "ns/a" in b.activity
    assert b.take(now=9.0) == [("ns/b", st(1, phase="Idle"))]
    b.observe("ns/a", st(3, phase="WaitingApproval"))  # activity that turns into a transition moves up
    assert "ns/a" in b.transitions and "ns/a" not in b.activity


def test_activity_waits_while_agents_arrive_or_leave_then_goes_coalesced() -> None:
    b = StatusBatcher(rate=100, hold_s=2.0, storm_min=1)
    sent_once(b, "ns/a", st(1))
    b.note_transition(now=10.0)  # an agent arrived (or left)
    for turns in range(2, 6):
        b.observe("ns/a", st(turns))
    assert b.take(now=10.5) == []
    assert b.wait_s(now=10.5) == pytest.approx(1.5)
    b.note_transition(now=11.0)  # another one: the hold extends
    assert b.take(now=12.5) == []
    assert b.take(now=13.0) == [("ns/a", st(5))]  # one patch, the latest numbers


def test_activity_waits_while_transitions_are_queued() -> None:
    b = StatusBatcher(rate=2, burst=2, hold_s=0.0)
    sent_once(b, "ns/old", st(1))
    b.observe("ns/old", st(2))
    for i in range(6):
        b.observe(f"ns/new{i}", st(0))
    order: list[str] = []
    t = 1.0
    while len(order) < 7:
        for key, status in b.take(now=t):
            order.append(key)
            b.done(key, status, ok=True)
        t += 0.5
    assert order == [f"ns/new{i}" for i in range(6)] + ["ns/old"]


def test_a_single_arrival_now_and_then_is_no_storm_but_a_burst_is() -> None:
    b = StatusBatcher(rate=100, hold_s=2.0, storm_min=4)
    sent_once(b, "ns/a", st(1))
    for t in (10.0, 11.0, 12.5):  # three arrivals, spread out: activity is not held
        b.note_transition(now=t)
    b.observe("ns/a", st(2))
    assert b.take(now=12.6) == [("ns/a", st(2))]
    b.done("ns/a", st(2), ok=True)
    for t in (13.0, 13.1, 13.2, 13.3):  # four within 2 s: a storm
        b.note_transition(now=t)
    b.observe("ns/a", st(3))
    assert b.take(now=13.4) == [] and not b.take(now=15.2)
    assert b.take(now=15.3) == [("ns/a", st(3))]


def test_held_activity_goes_after_max_hold_even_if_agents_keep_arriving() -> None:
    b = StatusBatcher(rate=100, hold_s=2.0, storm_min=1, max_hold_s=10.0)
    sent_once(b, "ns/a", st(1))
    b.observe("ns/a", st(2))
    got: list[float] = []
    for second in range(15):
        b.note_transition(now=float(second))  # a steady trickle of arrivals
        for key, status in b.take(now=float(second)):
            got.append(second)
            b.done(key, status, ok=True)
    assert got == [10.0]


def test_a_drain_storm_sends_every_first_report_before_any_activity_within_the_cap() -> None:
    """250 agents arrive at ~30/s while 250 others keep changing: every arrival's first report
    goes first, activity only after, and the cap (20/s, burst 20) holds throughout."""
    b = StatusBatcher(rate=20, burst=20, now=-1000.0)
    for i in range(250):
        sent_once(b, f"ns/stay{i}", st(1), now=-1000.0 + i)
    order: list[tuple[float, str]] = []
    t = 0.0
    arrived = 0
    while t < 30.0:
        while arrived < 250 and arrived <= t * 30:
            b.note_transition(t)
            b.observe(f"ns/new{arrived}", st(0))
            arrived += 1
        for i in range(250):
            b.observe(f"ns/stay{i}", st(2 + int(t)))
        for key, status in b.take(now=t):
            order.append((t, key))
            b.done(key, status, ok=True)
        t = round(t + 0.05, 2)
    firsts = [i for i, (_, k) in enumerate(order) if k.startswith("ns/new")]
    assert len(firsts) == 250 and firsts == list(range(250))  # all first reports, before any activity
    for start in range(0, 30):  # never more than rate x 1 s + burst in any second
        assert sum(1 for when, _ in order if start <= when < start + 1) <= 40
    assert sum(1 for when, _ in order if when < 30) <= 20 * 30 + 20


def test_a_draining_shard_holds_activity_from_the_start_but_not_forever() -> None:
    b = StatusBatcher(rate=100, max_hold_s=30.0)
    sent_once(b, "ns/a", st(1))
    b.draining = True  # its Lease says draining: no agent has left yet
    b.observe("ns/a", st(2))
    assert b.take(now=1.0) == [] and b.take(now=30.9) == []
    b.observe("ns/b", st(0))  # a transition still goes (e.g. a first report)
    assert b.take(now=31.0) == [("ns/b", st(0)), ("ns/a", st(2))]  # and held activity after max_hold_s
    b.done("ns/b", st(0), ok=True)
    b.done("ns/a", st(2), ok=True)
    b.observe("ns/a", st(3))
    b.draining = False
    assert b.take(now=31.5) == [("ns/a", st(3))]


def test_a_refused_report_is_not_retried_until_the_watch_says_the_agent_is_here() -> None:
    """A report the apiserver refused (status.shard names another shard) must not come back as a
    fresh first report at the next observation — each would be refused again until the shard's
    watch delivers the move (seconds under load)."""
    b = StatusBatcher(rate=100)
    sent_once(b, "ns/a", st(1))
    b.observe("ns/a", st(2))
    (key, status), = b.take(now=1.0)
    b.refused(key)
    b.done(key, status, ok=False)
    for second in range(2, 6):  # observed every second while the watch lags
        b.observe("ns/a", st(second))
        assert b.take(now=float(second)) == []
    b.owned("ns/a")  # placed here again (ADDED)
    b.observe("ns/a", st(9))
    assert b.take(now=7.0) == [("ns/a", st(9))] and b.is_transition("ns/a", st(9))


def test_arrivals_have_their_own_budget_and_activity_waits_for_them() -> None:
    """A drain brings 200 agents to a shard at once: their first reports use the arrival bucket
    (50/s here), not the everyday cap (20/s), which stays free for transitions of agents it already
    reported; activity waits until the arrivals are out."""
    b = StatusBatcher(20.0, now=0.0, arrival_rate=50.0)
    b.observe("old", st(0))
    first = b.take(0.0)
    assert [k for k, _ in first] == ["old"]
    b.done("old", first[0][1], ok=True)
    for i in range(200):
        b.observe(f"new-{i}", st(0))
    b.observe("old", st(0, "Idle"))  # a transition of an agent already reported
    got = [k for k, _ in b.take(1.0)]  # the buckets are full again
    assert len([k for k in got if k.startswith("new-")]) == 50 and "old" in got
    sent = 50
    t = 1.0
    while sent < 200:
        t += 0.1
        sent += len([k for k, _ in b.take(t) if k.startswith("new-")])
        assert t < 4.5, "arrivals should go out at their own 50/s"
    assert 3.9 <= t <= 4.1  # (200 - 50 burst) / 50 per second
    assert b.wait_s(t) == float("inf")


def test_without_an_arrival_rate_first_reports_share_the_cap() -> None:
    b = StatusBatcher(20.0, now=0.0)
    for i in range(100):
        b.observe(f"a-{i}", st(0))
    assert len(b.take(0.0)) == 20
