"""The tool-heavy coding session of the cache benchmark: its workspace and its deterministic model.

The workspace (`seed_workspace`): 12 Python modules of 1–3k tokens each (`src/mod_XX.py`, each with
a `REVISION = n` line the session edits) and `run_tests.sh`, a real shell script (awk) that prints a
200–400 line pytest-style log for a suite number: the same suite prints the same log, so a repeated
run is a duplicate output.

The model (`SessionModel`) is what the mock provider server answers with (`MockState.model`): for
turn t (set by the benchmark with `begin_turn`) it follows a plan drawn from a generator seeded with
t, one step per model call:

- step 1: read the turn's file (a recently touched one 60% of the time, so the same file is re-read
  and earlier reads are superseded), sometimes a second file in the same message;
- step 2 (most turns): edit the file (`edit_file` with the version and `REVISION` taken from this
  turn's read result in the request), or run a test suite;
- step 3 (some turns): run a test suite (`sh run_tests.sh SUITE LINES`; 6 suites: repeats are
  identical) or a short `grep`;
- then a short final answer. So 2–4 model calls per turn.

Requests that end with the naive compaction's summary instruction (`SUMMARY_PROMPT`) get a summary
instead: a header, the files read, and one line per user request found in the request (the previous
summary's lines included), the newest 70 kept: 2–2.5k tokens, the size real compaction summaries
have. The model counts requests that do not look like the step it expects (`mismatches`), so a
conversation the runtime garbled shows up in the results instead of passing silently.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence
from pathlib import Path

from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResultMessage, UserMessage
from agent_runtime.providers.base import ModelRequest

FILES = 12
SUITES = 6
SUMMARY_PROMPT = ("[compaction] Summarise the conversation so far for a fresh context: the user's requests, "
                  "the decisions taken, the files touched and their state, the open problems. Be complete; "
                  "the history will be replaced by your summary.")
SUMMARY_LINES = 70
SUMMARY_HEADER = "Summary of the session so far"
VERSION = re.compile(r"\[version: ([^\]]+)\]")
REVISION = re.compile(r"^REVISION = (\d+)$", re.M)

SYSTEM_PROMPT = "\n".join([
    "You are a careful senior software engineer working in a Python repository through tools.",
    "Rules of the workspace:",
    *(f"- Rule {i}: {rule}" for i, rule in enumerate([
        "read a file before you edit it, and edit with the version read_file reported",
        "run the relevant test suite after every change and read its log to the end",
        "keep changes small; one concern per edit; never reformat unrelated code",
        "explain what you changed and why in one or two sentences when the task is done",
        "prefer the standard library; do not add dependencies without being asked",
        "when a test fails, find the cause before changing the test",
        "keep public function signatures stable unless the user asks otherwise",
        "write docstrings for new functions and keep the existing style of the module",
        "never print secrets or tokens; never touch files outside the workspace",
        "if a command takes long or fails strangely, say so instead of retrying blindly",
    ] * 6, 1)),
    "The repository: src/ holds the modules, run_tests.sh runs a test suite by number (1-6).",
])


def module_source(index: int) -> str:
    """A plausible Python module of 1–3k tokens (deterministic per index)."""
    rng = random.Random(f"module|{index}")
    n_funcs = 7 + round(index * 1.4)  # 1.2k tokens (mod_01) .. 3k tokens (mod_12)
    lines = [f'"""Module {index:02d}: parsing and validation helpers for the records of stage {index}."""', "",
             "from __future__ import annotations", "", "import dataclasses", "import re", "", "REVISION = 0",
             f"LIMIT = {rng.randint(10, 500)}", ""]
    for f in range(n_funcs):
        name = f"{rng.choice(['parse', 'check', 'merge', 'split', 'load', 'render'])}_{rng.choice(['row', 'field', 'header', 'record', 'batch', 'key'])}_{f}"
        arg = rng.choice(["text", "row", "items", "value"])
        lines += [
            "", f"def {name}({arg}: str, strict: bool = False) -> list[str]:",
            f'    """{name.replace("_", " ").capitalize()}: returns the parts of `{arg}` that pass the checks."""',
            f"    parts = [p.strip() for p in {arg}.split({rng.choice([repr(','), repr(';'), repr('|')])}) if p.strip()]",
            f"    if strict and len(parts) > LIMIT:",
            f"        raise ValueError(f\"{name}: {{len(parts)}} parts, at most {{LIMIT}}\")",
            f"    return [p for p in parts if re.match(r\"^[a-z0-9_]{{1,{rng.randint(8, 64)}}}$\", p)]",
        ]
    return "\n".join(lines) + "\n"


RUN_TESTS = r"""#!/bin/sh
# run_tests.sh SUITE LINES: a pytest-style log of LINES lines for test suite SUITE (deterministic).
suite=${1:-1}; lines=${2:-300}
awk -v s="$suite" -v n="$lines" 'BEGIN {
  srand(s * 7919);
  print "============================= test session starts =============================="
  print "platform linux -- Python 3.11.9, pytest-8.3.3, pluggy-1.5.0"
  printf "collected %d items (suite %d)\n\n", n - 12, s
  fails = 0
  for (i = 1; i <= n - 12; i++) {
    r = rand(); st = (r < 0.03) ? "FAILED" : ((r < 0.06) ? "SKIPPED" : "PASSED")
    if (st == "FAILED") fails++
    printf "tests/test_mod_%02d.py::test_case_%04d %s [%3d%%]\n", (i * s) % 12, i, st, int(100 * i / (n - 12))
  }
  print ""
  print "=================================== FAILURES ==================================="
  printf "%d failed, %d passed in %.2fs\n", fails, n - 12 - fails, n / 97.0
}'
"""


def seed_workspace(workspace: Path) -> None:
    (workspace / "src").mkdir(parents=True, exist_ok=True)
    for i in range(1, FILES + 1):
        (workspace / "src" / f"mod_{i:02d}.py").write_text(module_source(i), encoding="utf-8")
    (workspace / "run_tests.sh").write_text(RUN_TESTS, encoding="utf-8")


@dataclasses.dataclass(frozen=True, slots=True)
class TurnPlan:
    turn: int
    request: str  # the user's message
    files: tuple[str, ...]  # read in step 1 (the first is the one the turn works on)
    steps: tuple[str, ...]  # after the reads: "edit", "test", "grep"
    suite: int
    lines: int


def plan_turn(turn: int, recent: list[str]) -> TurnPlan:
    rng = random.Random(f"turn|{turn}")
    if recent and rng.random() < 0.6:
        main = rng.choice(recent[-4:])
    else:
        main = f"src/mod_{rng.randint(1, FILES):02d}.py"
    files = [main]
    if rng.random() < 0.35:
        other = f"src/mod_{rng.randint(1, FILES):02d}.py"
        if other != main:
            files.append(other)
    k = rng.choice([1, 2, 2, 3, 3])
    steps = {1: [], 2: [rng.choice(["edit", "test", "test"])], 3: ["edit", rng.choice(["test", "test", "grep"])]}[k]
    suite = rng.randint(1, SUITES)
    lines = 200 + 40 * (suite - 1)  # 200..400 lines, fixed per suite: a repeat is identical
    what = {"edit": "fix", "test": "check", "grep": "look into"}[steps[0]] if steps else "explain"
    text = (f"Turn {turn}: please {what} the handling of malformed records in {main}"
            f"{' and run suite ' + str(suite) if 'test' in steps else ''}; keep the change small.")
    return TurnPlan(turn, text, tuple(files), tuple(steps), suite, lines)


class SessionModel:
    """The deterministic model of the session (see the module docstring). One per agent."""

    def __init__(self) -> None:
        self.current: TurnPlan | None = None
        self.step = 0
        self.recent: list[str] = []
        self.calls = 0
        self.summaries = 0
        self.mismatches = 0
        self.stale_edits = 0

    def begin_turn(self, turn: int) -> str:
        """Start turn `turn`; returns the user message to send."""
        self.current = plan_turn(turn, self.recent)
        self.step = 0
        main = self.current.files[0]
        if main in self.recent:
            self.recent.remove(main)
        self.recent.append(main)
        return self.current.request

    def _id(self, i: int) -> str:
        assert self.current is not None
        return f"toolu_{self.current.turn:04d}_{self.step - 1}_{i}"  # self.step is already the next step

    def plan(self, request: ModelRequest) -> AssistantMessage:
        """The next message (the mock server's `MockModel` protocol)."""
        last = request.messages[-1] if request.messages else None
        if isinstance(last, UserMessage) and last.text.endswith(SUMMARY_PROMPT):
            self.summaries += 1
            return AssistantMessage(text=summary_of(request.messages[:-1]), stop_reason="end_turn")
        plan = self.current
        assert plan is not None, "begin_turn first"
        self.calls += 1
        step = self.step
        self.step += 1
        self._check(request.messages, step)
        if step == 0:
            calls = tuple(ToolCall(self._id(i), "read_file", {"path": f}) for i, f in enumerate(plan.files))
            return AssistantMessage(text=f"Let me read {' and '.join(plan.files)} first.", tool_calls=calls,
                                    stop_reason="tool_use")
        if step - 1 < len(plan.steps):
            kind = plan.steps[step - 1]
            if kind == "edit":
                edit = self._edit(request.messages, plan)
                if edit is not None:
                    return edit
                self.stale_edits += 1
                kind = "grep"
            if kind == "test":
                call = ToolCall(self._id(0), "shell", {"command": f"sh run_tests.sh {plan.suite} {plan.lines}"})
                return AssistantMessage(text=f"Running suite {plan.suite}.", tool_calls=(call,), stop_reason="tool_use")
            call = ToolCall(self._id(0), "shell", {"command": f"grep -n 'def \\|raise' {plan.files[0]} | head -40"})
            return AssistantMessage(text="Checking where it raises.", tool_calls=(call,), stop_reason="tool_use")
        return AssistantMessage(
            text=(f"Done with turn {plan.turn}: {plan.files[0]} "
                  f"{'is edited and ' if 'edit' in plan.steps else ''}"
                  f"{'suite ' + str(plan.suite) + ' ran; its failures are the known flaky cases' if 'test' in plan.steps else 'was reviewed'}."
                  " Nothing else needs to change."),
            stop_reason="end_turn")

    def _check(self, messages: Sequence[Message], step: int) -> None:
        """The request must end where this step expects: the turn's user message, or its tool results."""
        assert self.current is not None
        last = messages[-1] if messages else None
        turn_line = f"\nTurn {self.current.turn}:"
        if isinstance(last, UserMessage):
            # the turn's request (after a compaction it arrives in one user turn with the summary), or, at
            # any step, a summary that replaced the history (naive compaction): the model carries on from it
            ok = (step == 0 and turn_line in "\n" + last.text) or (
                last.text.startswith(SUMMARY_HEADER) and turn_line not in "\n" + last.text)
        else:
            ok = step > 0 and isinstance(last, ToolResultMessage) and last.result.tool_call_id.startswith(
                f"toolu_{self.current.turn:04d}_{step - 1}_")
        if not ok:
            self.mismatches += 1

    def _edit(self, messages: Sequence[Message], plan: TurnPlan) -> AssistantMessage | None:
        """An edit of the turn's file against what this turn's read returned (None if it is not in the request)."""
        want = f"toolu_{plan.turn:04d}_0_0"
        for m in reversed(messages):
            if isinstance(m, ToolResultMessage) and m.result.tool_call_id == want:
                version = VERSION.findall(m.result.content)
                revision = REVISION.search(m.result.content)
                if not version or revision is None:
                    return None
                n = int(revision.group(1))
                call = ToolCall(self._id(0), "edit_file", {
                    "path": plan.files[0], "version": version[-1],
                    "old_text": f"REVISION = {n}\n", "new_text": f"REVISION = {n + 1}\n"})
                return AssistantMessage(text=f"Bumping the revision of {plan.files[0]} with the fix.",
                                        tool_calls=(call,), stop_reason="tool_use")
        return None


def summary_of(messages: Sequence[Message]) -> str:
    """The compaction summary: bounded, built from what the request holds (earlier summaries included)."""
    lines: list[str] = []
    files: set[str] = set()
    for m in messages:
        if isinstance(m, UserMessage):  # a summary, a request, or both (one user turn)
            for ln in m.text.splitlines():
                if ln.startswith("- Turn "):
                    lines.append(ln)
                elif ln.startswith("Turn "):
                    lines.append(f"- {ln} Done; the change was made and checked.")
        elif isinstance(m, AssistantMessage):
            files.update(str(c.arguments.get("path")) for c in m.tool_calls if "path" in c.arguments)
    kept = lines[-SUMMARY_LINES:]
    return "\n".join([
        f"{SUMMARY_HEADER} (the earlier history was replaced by this summary).",
        f"Files read or edited: {', '.join(sorted(files)) or 'none'}.",
        "The work: small fixes to the record-parsing modules, each followed by a run of the relevant test "
        "suite; failures seen are the known flaky cases. Requests, oldest first:",
        *kept,
    ])
