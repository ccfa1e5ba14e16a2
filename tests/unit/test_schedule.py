"""The tool plan of one message (`agent_runtime.agent.schedule`), without asyncio: when calls
start (mid-stream or at the message's end), the order within a message (barriers), approvals,
unfinished messages, durability, and the results' order. Example tests state each rule on a
small message; a property test drives random messages through random interleavings (calls
arriving, tools finishing in any order, `tool_call`s becoming durable, operators deciding) and
checks every rule against an independent oracle at every step. The shell that runs the plan is
tested with real tasks in test_streaming_tools.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime.agent.autonomy import Verdict
from agent_runtime.agent.schedule import CallFacts, StreamingStart, ToolSchedule
from agent_runtime.agent.turn import is_incomplete
from agent_runtime.messages import ToolCall, ToolResult

ALLOW = Verdict("allow", None, "allowed by the default action")
ASK = Verdict("ask", 0, "ask by rule 0")
DENY = Verdict("deny", 1, "deny by rule 1 (shell rm *)")


def read(i: str, verdict: Verdict = ALLOW, **kw: Any) -> CallFacts:
    return CallFacts(ToolCall(i, "read_file", {"path": i}), read_only=True, idempotent=True, verdict=verdict, **kw)


def write(i: str, verdict: Verdict = ALLOW, **kw: Any) -> CallFacts:
    """Idempotent, with side effects (write_file)."""
    return CallFacts(ToolCall(i, "write_file", {"path": i}), idempotent=True, verdict=verdict, **kw)


def shell(i: str, verdict: Verdict = ALLOW, **kw: Any) -> CallFacts:
    return CallFacts(ToolCall(i, "shell", {"command": i}), verdict=verdict, **kw)


def bad(i: str, **kw: Any) -> CallFacts:
    refusal = ToolResult(i, "nope", "error[unknown_tool]: no tool named 'nope'", is_error=True)
    return CallFacts(ToolCall(i, "nope", {}), refusal=refusal, **kw)


def ok(i: str) -> ToolResult:
    return ToolResult(i, "t", f"{i} ok")


def end_message(s: ToolSchedule, facts: list[CallFacts], stop: str = "tool_use") -> list[str]:
    """The message ended: announce, triage, the commit lands. Returns the ids ready now."""
    s.announce(stop)
    triage = s.triage(facts, stop)
    s.durable(c.id for c in triage.start)
    return ids(s.ready())


def ids(calls: list[ToolCall]) -> list[str]:
    return [c.id for c in calls]


# -- when calls start ------------------------------------------------------------------------------


def test_read_only_calls_start_mid_stream_side_effects_wait_for_the_stop() -> None:
    s = ToolSchedule()
    assert s.arrive(read("r1")) == "early" and ids(s.ready()) == ["r1"]
    assert s.arrive(write("w1")) == "late" and s.arrive(shell("s1")) == "late" and s.ready() == []
    assert s.announce("tool_use") == [(read("r1").call, True), (write("w1").call, False), (shell("s1").call, False)]
    triage = s.triage([read("r1"), write("w1"), shell("s1")], "tool_use")
    assert ids(list(triage.start)) == ["w1", "s1"] and not triage.ask and triage.jobs == 3
    assert s.ready() == []  # not durable yet
    s.durable(["w1", "s1"])
    assert s.ready() == []  # w1 waits for r1
    s.finished("r1", ok("r1"))
    assert ids(s.ready()) == ["w1"]
    s.finished("w1", ok("w1"))
    assert ids(s.ready()) == ["s1"]
    s.finished("s1", ok("s1"))
    assert s.settled and [r.tool_call_id for r in s.results()] == ["r1", "w1", "s1"]


def test_idempotent_calls_start_early_only_when_opted_in_and_durable_first() -> None:
    s = ToolSchedule("readOnlyOrIdempotent")
    assert s.arrive(read("r1")) == "early" and ids(s.ready()) == ["r1"]
    assert s.arrive(write("w1")) == "early_durable"
    assert s.early_calls() == [read("r1").call]  # w1 counts as started once durable
    s.durable(["w1"])
    assert s.ready() == []  # after r1 has ended
    assert s.arrive(shell("s1")) == "late"  # not idempotent
    s.finished("r1", ok("r1"))
    assert ids(s.ready()) == ["w1"]  # mid-stream
    assert s.announce("tool_use") == [(read("r1").call, True), (write("w1").call, True), (shell("s1").call, False)]
    for mode in ("readOnly", "off"):
        s = ToolSchedule(mode)  # type: ignore[arg-type]
        assert s.arrive(write("w1")) == "late"
    assert ToolSchedule("off").arrive(read("r1")) == "late"


def test_an_opted_in_early_write_waits_for_earlier_reads_and_stops_early_starts() -> None:
    s = ToolSchedule("readOnlyOrIdempotent")
    s.arrive(read("r1"))
    assert ids(s.ready()) == ["r1"]
    assert s.arrive(write("w1")) == "early_durable"
    s.durable(["w1"])
    assert s.arrive(read("r2")) == "late"  # nothing starts early after a side effect
    assert s.waiting_for("w1") == ["r1"]
    s.finished("r1", ok("r1"))
    assert ids(s.ready()) == ["w1"]
    assert end_message(s, [read("r1"), write("w1"), read("r2")]) == []  # r2 waits for w1
    s.finished("w1", ok("w1"))
    assert ids(s.ready()) == ["r2"]


def test_a_side_effect_starts_early_only_if_every_earlier_valid_call_did() -> None:
    s = ToolSchedule("readOnlyOrIdempotent")
    s.arrive(read("r1", ASK))  # valid, not started early
    assert s.arrive(read("r2")) == "early"  # a read only waits for side effects
    assert s.arrive(write("w1")) == "late"
    s = ToolSchedule("readOnlyOrIdempotent")
    s.arrive(bad("x1"))  # never runs: no barrier
    assert s.arrive(write("w1")) == "early_durable"
    s = ToolSchedule("readOnlyOrIdempotent")
    s.arrive(shell("s1", DENY))  # denied, but valid with side effects: the stream errs on the safe side
    assert s.arrive(read("r1")) == "late"


def test_calls_a_restart_cut_short_never_start_early_and_run_again() -> None:
    s = ToolSchedule()
    assert s.arrive(read("r1", started_before=True)) == "late"
    triage = s.triage([read("r1", started_before=True), shell("s1", started_before=True)], "max_tokens")
    assert ids(list(triage.start)) == ["r1", "s1"]  # even in an unfinished message: they ran already
    s.durable(["r1", "s1"])
    assert ids(s.ready()) == ["r1"]


# -- order within a message ------------------------------------------------------------------------


def test_reads_run_together_a_side_effect_runs_alone_between_them() -> None:
    facts = [read("a"), read("b"), write("c"), read("d"), read("e")]
    s = ToolSchedule("off")
    for f in facts:
        s.arrive(f)
    assert end_message(s, facts) == ["a", "b"]
    s.finished("b", ok("b"))
    assert s.ready() == []
    s.finished("a", ok("a"))
    assert ids(s.ready()) == ["c"]
    s.finished("c", ok("c"))
    assert ids(s.ready()) == ["d", "e"]


def test_a_read_after_a_write_of_the_same_message_waits_for_the_write() -> None:
    # [write_file a, read_file a]: the read must not run before (or during) the write, although
    # it is read-only and complete mid-stream.
    facts = [write("w1"), read("r1")]
    s = ToolSchedule()
    assert s.arrive(facts[0]) == "late" and s.arrive(facts[1]) == "late"  # no early start after a side effect
    assert s.announce("tool_use") == [(facts[0].call, False), (facts[1].call, False)]  # both start at the stop
    triage = s.triage(facts, "tool_use")
    s.durable(c.id for c in triage.start)
    assert ids(s.ready()) == ["w1"]
    assert s.waiting_for("r1") == ["w1"]
    s.finished("w1", ok("w1"))
    assert ids(s.ready()) == ["r1"]


def test_calls_that_never_run_are_no_barrier_an_asked_call_is() -> None:
    facts = [bad("x1"), shell("d1", DENY), read("r1"), write("w1", ASK), read("r2"), shell("s1")]
    s = ToolSchedule()
    for f in facts:
        s.arrive(f)
    s.announce("tool_use")
    triage = s.triage(facts, "tool_use")
    assert [c.id for c, _ in triage.ask] == ["w1"] and triage.ask[0][1] == "ask by rule 0"
    assert ids(list(triage.start)) == ["r1", "r2", "s1"] and triage.jobs == 4  # r1 is late: after a valid side effect
    s.durable(c.id for c in triage.start)
    assert ids(s.ready()) == ["r1"]  # r1 waits for nothing; r2 for the asked write
    assert s.waiting_for("r2") == ["w1"] and s.waiting_for("s1") == ["r1", "w1", "r2"]
    s.finished("r1", ok("r1"))
    assert s.ready() == []
    s.decided("w1", True)  # the `approval` commit carried its `tool_call`
    assert ids(s.ready()) == ["w1"]
    s.finished("w1", ok("w1"))
    assert ids(s.ready()) == ["r2"]
    s.finished("r2", ok("r2"))
    assert ids(s.ready()) == ["s1"]
    s.finished("s1", ok("s1"))
    results = s.results()
    assert [r.tool_call_id for r in results] == ["x1", "d1", "r1", "w1", "r2", "s1"]
    assert results[0].content.startswith("error[unknown_tool]")
    assert results[1].content == "error[denied]: tool call refused: deny by rule 1 (shell rm *)"


def test_an_operators_no_ends_the_barrier_and_denies_the_call() -> None:
    facts = [shell("s1", ASK), read("r1")]
    s = ToolSchedule()
    assert end_message(s, facts) == []
    s.decided("s1", False, "no operator answered within 5 s")
    assert ids(s.ready()) == ["r1"]
    s.finished("r1", ok("r1"))
    assert s.settled
    assert s.results()[0].content == "error[denied]: tool call refused: no operator answered within 5 s"
    assert s.ran() == {"r1": ok("r1")}


def test_what_the_log_says_about_approvals_decides_after_a_restart() -> None:
    facts = [shell("s1", ALLOW, approval="pending"), shell("s2", ALLOW, approval="deny")]
    s = ToolSchedule()
    triage = s.triage(facts, "tool_use")
    assert triage.ask == ((facts[0].call, ""),) and not triage.start  # asked once: wait again, no new reason
    assert not s.settled and s.ready() == []
    s.decided("s1", True)
    assert ids(s.ready()) == ["s1"]
    s.finished("s1", ok("s1"))
    assert s.results()[1].content == "error[denied]: tool call refused: an operator denied it"


# -- unfinished messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["max_tokens", "content_filter", "error", "interrupted"])
def test_an_unfinished_message_cancels_what_never_started_and_keeps_early_calls(stop: str) -> None:
    facts = [read("r1"), read("r2"), write("w1"), shell("s1"), bad("x1")]
    s = ToolSchedule()
    for f in facts:
        s.arrive(f)
    assert ids(s.ready()) == ["r1", "r2"]
    assert s.announce(stop) == [(facts[0].call, True), (facts[1].call, True)]  # only what runs already
    triage = s.triage(facts, stop)
    assert not triage.start and not triage.ask and triage.jobs == 2
    assert s.ready() == []
    s.finished("r2", ok("r2"))
    s.finished("r1", ok("r1"))
    assert s.settled
    got = s.results()
    assert [r.content for r in got[:2]] == ["r1 ok", "r2 ok"]
    for r in got[2:]:
        assert r.is_error and r.content == (f"error[cancelled]: not run: the message ended with stop reason {stop!r} "
                                            "before it was complete")


def test_an_early_side_effect_not_yet_durable_is_not_reported_as_started() -> None:
    s = ToolSchedule("readOnlyOrIdempotent")
    assert s.arrive(write("w1")) == "early_durable"
    assert s.early_calls() == [] and s.ready() == []  # an interrupt in its commit: it never ran
    s.durable(["w1"])
    assert s.early_calls() == [write("w1").call] and ids(s.ready()) == ["w1"]


# -- the property: any interleaving respects every rule ----------------------------------------------

KINDS = {"read": read, "write": write, "shell": shell}


@st.composite
def messages(draw: st.DrawFn) -> tuple[StreamingStart, list[CallFacts], str]:
    mode = draw(st.sampled_from(["readOnly", "readOnlyOrIdempotent", "off"]))
    n = draw(st.integers(1, 7))
    facts = []
    for i in range(n):
        cid = f"c{i}"
        if draw(st.integers(0, 9)) == 0:
            facts.append(bad(cid))
            continue
        kind = draw(st.sampled_from(sorted(KINDS)))
        verdict = draw(st.sampled_from([ALLOW, ALLOW, ALLOW, ASK, DENY]))
        f = KINDS[kind](cid, verdict)
        if draw(st.integers(0, 7)) == 0:
            f = dataclasses.replace(f, started_before=True)
        facts.append(f)
    stop = draw(st.sampled_from(["tool_use", "tool_use", "end_turn", "max_tokens", "content_filter", "error"]))
    return mode, facts, stop


@dataclasses.dataclass
class Log:
    """What happened, in steps: when each call started (and whether before the stop was known),
    ended, became durable, was decided."""

    step: int = 0
    started: dict[str, int] = dataclasses.field(default_factory=dict)
    started_mid_stream: set[str] = dataclasses.field(default_factory=set)
    ended: dict[str, int] = dataclasses.field(default_factory=dict)
    durable: dict[str, int] = dataclasses.field(default_factory=dict)
    decided: dict[str, bool] = dataclasses.field(default_factory=dict)


def may_start_early(mode: str, f: CallFacts, earlier: list[CallFacts], early: set[str]) -> bool:
    """The oracle of docs/tools.md's table, written independently of the schedule."""
    if mode == "off" or f.started_before or f.refusal is not None or f.verdict != ALLOW:
        return False
    if not (f.read_only or (f.idempotent and mode == "readOnlyOrIdempotent")):
        return False
    valid = [e for e in earlier if e.refusal is None]
    if any(not e.read_only for e in valid):
        return False
    return f.read_only or all(e.call.id in early for e in valid)


@settings(max_examples=400, deadline=None)
@given(messages(), st.data())
def test_any_interleaving_respects_the_ordering_rules(message: tuple[StreamingStart, list[CallFacts], str],
                                                     data: st.DataObject) -> None:
    mode, facts, stop = message
    s = ToolSchedule(mode)
    log = Log()
    running: list[str] = []
    by_id = {f.call.id: f for f in facts}
    early: set[str] = set()
    stream_over = False

    def start_ready() -> None:
        for call in s.ready():
            assert call.id not in log.started, f"{call.id} started twice"
            log.started[call.id] = log.step
            if not stream_over:
                log.started_mid_stream.add(call.id)
            running.append(call.id)
        log.step += 1

    def finish_some() -> None:
        while running and data.draw(st.booleans(), label="finish one now"):
            cid = running.pop(data.draw(st.integers(0, len(running) - 1), label="which finishes"))
            log.ended[cid] = log.step
            s.finished(cid, ok(cid))
            start_ready()

    # the stream: calls arrive in order, tools finish in any order between arrivals
    for i, f in enumerate(facts):
        arrival = s.arrive(f)
        expect = may_start_early(mode, f, facts[:i], early)
        assert (arrival != "late") == expect, (f, arrival)
        if expect:
            early.add(f.call.id)
            assert arrival == ("early" if f.read_only else "early_durable")
        start_ready()
        if arrival == "early_durable":
            finish_some()  # other calls may finish while its `tool_call` is committed
            log.durable[f.call.id] = log.step
            s.durable([f.call.id])
            start_ready()
        finish_some()
    announced = s.announce(stop)
    incomplete = is_incomplete(stop)
    assert announced == [(f.call, f.call.id in early) for f in facts
                         if f.call.id in early or (not incomplete and f.refusal is None and f.verdict == ALLOW)]
    stream_over = True
    # the message's end
    triage = s.triage(facts, stop)
    start_ids = {c.id for c in triage.start}
    ask_ids = {c.id for c, _ in triage.ask}
    start_ready()  # their `tool_call`s are being committed
    finish_some()
    log.durable.update((cid, log.step) for cid in start_ids)
    s.durable(start_ids)
    start_ready()
    while not s.settled:
        pending = [c for c in ask_ids if c not in log.decided]
        assert running or pending, "nothing runs, nothing waits for an operator, yet not settled (a deadlock)"
        if pending and (not running or data.draw(st.booleans(), label="an operator answers")):
            cid = pending[data.draw(st.integers(0, len(pending) - 1), label="which is answered")]
            allow = data.draw(st.booleans(), label="allow")
            log.decided[cid] = allow
            if allow:
                log.durable[cid] = log.step
            else:
                log.ended[cid] = log.step
            s.decided(cid, allow, "an operator denied it")
            start_ready()
        else:
            cid = running.pop(data.draw(st.integers(0, len(running) - 1), label="which finishes"))
            log.ended[cid] = log.step
            s.finished(cid, ok(cid))
            start_ready()

    # Every rule, checked on what happened.
    for i, f in enumerate(facts):
        cid = f.call.id
        runs = cid in log.started
        should_run = (cid in early or f.started_before
                      or (not incomplete and f.refusal is None and f.approval != "deny"
                          and (f.verdict == ALLOW or (f.verdict == ASK and log.decided.get(cid) is True))))
        assert runs == should_run, (cid, f, stop)
        if not runs:
            continue
        # a side effect never starts before the stop reason, unless opted in and early
        if cid in log.started_mid_stream:
            assert cid in early
        if not f.read_only and cid not in early:
            assert cid not in log.started_mid_stream
        # no call starts before its `tool_call` is durable, but an early read-only call
        if not (cid in early and f.read_only):
            assert log.durable[cid] <= log.started[cid], cid
        # an asked call starts only after an operator's allow
        if cid in ask_ids:
            assert log.decided.get(cid) is True
        # order within the message: barriers (calls that run or were asked) have ended
        barriers = [e.call.id for e in facts[:i] if e.call.id in log.started or e.call.id in ask_ids]
        if not f.read_only:
            for b in barriers:
                assert log.ended[b] <= log.started[cid], (cid, "started before", b, "ended")
        else:
            side = [b for b in barriers if not by_id[b].read_only]
            if side:
                assert log.ended[side[-1]] <= log.started[cid], (cid, "started before", side[-1], "ended")
    # consecutive reads run together: two adjacent allowed reads that run after the stop start at once
    for a, b in zip(facts, facts[1:], strict=False):
        if (a.read_only and b.read_only and a.call.id in log.started and b.call.id in log.started
                and a.call.id not in early and b.call.id not in early and a.call.id in start_ids and b.call.id in start_ids):
            assert log.started[a.call.id] == log.started[b.call.id]
    # results: one per call, in call order; a call that ran has its own, the others say why not
    results = s.results()
    assert [r.tool_call_id for r in results] == [f.call.id for f in facts]
    for f, r in zip(facts, results, strict=True):
        cid = f.call.id
        if cid in log.started:
            assert r == ok(cid)
        elif f.refusal is not None and not incomplete:
            assert r == f.refusal
        elif incomplete:
            assert r.content.startswith("error[cancelled]")
        else:
            assert r.content.startswith("error[denied]")
    assert s.ran() == {cid: ok(cid) for cid in log.started}
    assert triage.jobs == len(early | start_ids | ask_ids)
