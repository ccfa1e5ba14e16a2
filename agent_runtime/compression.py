"""Frozen-prefix compression: planning, folding and consolidating (sans-IO). See docs/compression.md.

The prompt is `[system + tools] [frozen chunk 1] … [frozen chunk k] [live tail]`. When the live tail
passes its budget (`AgentSpec.tail_budget()`), `plan_fold` picks its oldest messages and `fold` turns
them into a new frozen chunk: the same messages, with what the model no longer needs made short:

- a `read_file` result whose file is read or written again later is *superseded* (one line says so);
- a tool output identical to an earlier one of the same span is a *duplicate* (one line names the
  call that has it), a long one that shares most lines with an earlier one becomes the diff from it
  (*similar*) — found by the native history analysis and the native diff;
- a tool output (or a long string argument, e.g. `write_file` content) over `foldedOutputTokens` is
  cut to its head and tail with a note of what was left out;
- user messages, the model's text and its decisions (which tools it called, with which arguments)
  stay as they were.

Each message is `prepare`d once, when it arrives (its cut version, its archive line), so a fold
only decides and assembles. The chunk is stored in the agent's log as a `compression` event and
appended after the earlier chunks; chunks are never rewritten, so the prompt's prefix stays
byte-identical from turn to turn and the provider serves it from its cache. A restart replays the
stored chunk, it does not analyse it again. When the frozen chunks pass `frozenBudget`,
`consolidate` joins their stored archive lines into one archive chunk (one cache miss every many
turns, a bounded prompt).
"""

from __future__ import annotations

import dataclasses
import functools
import posixpath
from collections.abc import Collection, Sequence
from typing import Any

from agent_runtime import native
from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResult, ToolResultMessage, UserMessage, encode_message
from agent_runtime.tokens import count, estimate, message_tokens

READ_TOOLS = frozenset({"read_file"})
"""Tools whose result is the content of the file at their `path`: superseded by a later read or write."""
PATH_TOOLS = frozenset({"read_file", "write_file", "edit_file"})
"""Tools whose `path` argument names the one file they read or change."""
CHARS_PER_TOKEN = 4  # picking the head and tail of a long text; the result is counted exactly


# -- planning --------------------------------------------------------------------------------------


def can_cut_before(m: Message) -> bool:
    """A chunk may end before a user message or an assistant message, never between a model
    message and its tool results (every provider wants a result right after its call)."""
    return not isinstance(m, ToolResultMessage)


def plan_fold(messages: Sequence[Message], tokens: Sequence[int], start: int, total: int, budget: int, keep: int,
              max_fold: int | None = None) -> int:
    """How many of the live tail's oldest messages (`messages[start:]`, `total` tokens, a count the
    state keeps incrementally) to fold; 0: none. Folds from the oldest until at most `keep` tokens
    would stay live (or `max_fold` tokens are folded: a huge tail folds in several steps, each its
    own event, so no single step holds the event loop long), then moves the cut forward to the next
    place a chunk may end (back to the one before it when there is none up to the newest message);
    the newest message always stays live. Looks only at the messages it folds (and the few up to the cut)."""
    last = len(messages) - 1
    if total <= budget or last - start < 1:
        return 0
    left = total
    cut = start
    while cut < last and left > keep and (max_fold is None or total - left < max_fold):
        left -= tokens[cut]
        cut += 1
    forward = cut
    while forward < last and not can_cut_before(messages[forward]):
        forward += 1
    if forward > start and can_cut_before(messages[forward]):
        return forward - start
    # no place to end a chunk from the cut to the newest message (a model message and its tool
    # results at the end): the nearest one before the cut, leaving more than `keep` live
    back = cut
    while back > start and not can_cut_before(messages[back]):
        back -= 1
    return back - start


# -- folding -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Fold:
    """A new frozen chunk: the folded messages, their token counts, and what was done to them."""

    messages: tuple[Message, ...]
    tokens: tuple[int, ...]
    tokens_before: int
    superseded: int
    duplicates: int
    truncated: int
    similar: int = 0
    digest: tuple[str, ...] = ()
    """The archive lines of the folded messages (`digest`), stored with the chunk."""
    digest_tokens: tuple[int, ...] = ()

    @property
    def tokens_after(self) -> int:
        return sum(self.tokens)

    def event_data(self, chunk: int, consolidated: bool = False) -> dict[str, Any]:
        """The `compression` event's data (the chunk is replayed from it, never re-analysed).
        `consolidated`: the chunk replaces every frozen chunk (`consolidate`), not the oldest live messages."""
        return {
            "chunk": chunk,
            **({"consolidated": True} if consolidated else {}),
            "folded_messages": len(self.messages),
            "analysed": len(self.messages),
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "superseded": self.superseded,
            "duplicates": self.duplicates,
            "truncated": self.truncated,
            "similar": self.similar,
            "messages": [encode_message(m) for m in self.messages],
            "digest": list(self.digest),
            "digest_tokens": list(self.digest_tokens),
            "message_tokens": list(self.tokens),
        }


def head_tail(text: str, max_tokens: int, what: str, total: int | None = None) -> str | None:
    """`text` cut to its head and tail (about `max_tokens` together, on line boundaries where
    possible) with a note of what was left out, or None if it is short enough already. `total`:
    the text's token count when the caller knows it (a committed message's), saving a recount."""
    if len(text) <= max_tokens:  # a token is at least one character: short, no need to count
        return None
    total = count(text) if total is None else total
    if total <= max_tokens:
        return None
    chars = max_tokens * CHARS_PER_TOKEN
    for _ in range(4):  # chars per token vary (code, digits): shrink until the ends fit
        half = chars // 2
        head = text[:half]
        nl = head.rfind("\n")
        if nl > half // 2:
            head = head[: nl + 1]
        tail = text[-half:] if half else ""
        nl = tail.find("\n")
        if 0 <= nl < half // 2:
            tail = tail[nl + 1 :]
        kept = count(head) + count(tail)
        if kept <= max_tokens or half < 8:
            break
        chars = chars * max_tokens // kept
    lines = text.count("\n") + 1
    middle = len(text) - len(head) - len(tail)
    left_out = text.count("\n", len(head), len(text) - len(tail))
    return (f"{head}\n[… {what} folded: {lines} lines, {total} tokens; {middle} characters"
            f"{f' ({left_out} lines)' if left_out else ''} in the middle left out …]\n{tail}")


def _fold_arguments(call: ToolCall, max_tokens: int) -> tuple[ToolCall, bool]:
    args: dict[str, Any] = {}
    changed = False
    for key, value in call.arguments.items():
        if isinstance(value, str) and (short := head_tail(value, max_tokens, f"argument {key!r}")) is not None:
            args[key] = short
            changed = True
        else:
            args[key] = value
    return (ToolCall(call.id, call.name, args), True) if changed else (call, False)


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """What folding a message needs that depends on the message alone, made when it arrives (the
    turn machine prepares each new message once), so a fold only decides and assembles: the message
    cut short (head and tail of a long output, long arguments cut) with its tokens, or None when
    cutting would not make it shorter; and its archive line."""

    cut: Message | None
    cut_tokens: int
    line: str
    line_tokens: int


def prepare(m: Message, tokens: int, max_output_tokens: int) -> Prepared:
    cut: Message | None = None
    if isinstance(m, ToolResultMessage):
        r = m.result
        if (short := head_tail(r.content, max_output_tokens, "output", tokens)) is not None:
            cut = ToolResultMessage(ToolResult(r.tool_call_id, r.name, short, is_error=r.is_error))
    elif isinstance(m, AssistantMessage) and m.tool_calls:
        folded = [_fold_arguments(c, max_output_tokens) for c in m.tool_calls]
        if any(changed for _, changed in folded):
            cut = AssistantMessage(m.text, tuple(c for c, _ in folded), m.stop_reason, provider_state=m.provider_state)
    cut_tokens = message_tokens(cut) if cut is not None else tokens
    if cut_tokens >= tokens:  # cutting never makes a message longer
        cut, cut_tokens = None, tokens
    line = digest(m)
    return Prepared(cut, cut_tokens, line, estimate(line) if line else 0)


def fold(
    span: Sequence[Message],
    span_tokens: Sequence[int],
    paths: Sequence[str | None],
    later_paths: Collection[str],
    max_output_tokens: int,
    prepared: Sequence[Prepared | None] | None = None,
) -> Fold:
    """Fold `span` (the oldest live messages) into a chunk. `prepared[i]`: `prepare(span[i])` when the
    caller has it (made as the message arrived), else it is made now. `paths[i]`: the file the tool result
    `span[i]` read or changed (None otherwise); `later_paths`: files read or changed by the live
    messages after the span. Deterministic: the same span always folds to the same chunk.

    A result that points at another ("same output as call X", "call X's output with these
    changes") only points at one the chunk shows (whole or cut): an exact duplicate of an output that
    was itself superseded is kept (cut if long). A long near duplicate (native analysis: most lines
    shared) becomes the diff from the earlier output when that is shorter than its head and tail."""
    # a failed call (denied, refused, an error) read or changed nothing: it supersedes no read
    paths = [None if isinstance(m, ToolResultMessage) and m.result.is_error else p for m, p in zip(span, paths, strict=True)]
    result_at = [i for i, m in enumerate(span) if isinstance(m, ToolResultMessage)]
    outputs = [span[i].result.content for i in result_at]  # type: ignore[union-attr]
    report = native.analyze_history(outputs, [paths[i] for i in result_at])
    duplicate_of = {result_at[i]: result_at[first] for i, first in report.exact_duplicates}
    similar_to = {result_at[i]: result_at[j] for i, j, _sim in report.near_duplicates}
    superseded = {result_at[earlier] for earlier, _later in report.superseded}
    for i in result_at:
        path = paths[i]
        if path is not None and path in later_paths:
            superseded.add(i)
    shown: dict[int, bool] = {}  # result index -> shown whole (True) or cut (False); absent: elided
    out: list[Message] = []
    tokens: list[int] = []
    counts = {"superseded": 0, "duplicate": 0, "similar": 0, "cut": 0}
    ready = [
        (prepared[i] if prepared is not None else None) or prepare(m, span_tokens[i], max_output_tokens)
        for i, m in enumerate(span)
    ]
    for i, m in enumerate(span):
        new: Message = m
        new_tokens = span_tokens[i]
        p = ready[i]
        if isinstance(m, ToolResultMessage):
            r = m.result
            content: str | None = None
            kind = ""
            if i in superseded and r.name in READ_TOOLS and not r.is_error:
                content, kind = f"[folded: {paths[i]} was read or changed again later; this earlier content is superseded]", "superseded"
            elif i in duplicate_of and duplicate_of[i] in shown:
                first = span[duplicate_of[i]]
                assert isinstance(first, ToolResultMessage)
                content, kind = f"[folded: same output as tool call {first.result.tool_call_id}]", "duplicate"
            elif p.cut is not None:
                new, new_tokens, kind = p.cut, p.cut_tokens, "cut"
                like = similar_to.get(i)
                base = span[like] if like is not None and like in shown else None
                if isinstance(base, ToolResultMessage):
                    changes = native.diff(base.result.content, r.content).unified(
                        context=0, from_file=base.result.tool_call_id, to_file=r.tool_call_id)
                    if count(changes) < max_output_tokens:
                        content = (f"[folded: the output of tool call {base.result.tool_call_id} (as it was, before any "
                                   f"folding) with these changes]\n{changes}")
                        kind = "similar"
                if content is None:
                    counts["cut"] += 1
            if content is not None:
                candidate = ToolResultMessage(ToolResult(r.tool_call_id, r.name, content, is_error=r.is_error))
                n = message_tokens(candidate)
                if n < new_tokens:  # a fold never makes a message longer
                    new, new_tokens = candidate, n
                    counts[kind] += 1
                elif kind == "similar":  # the diff is no shorter: the cut stands
                    counts["cut"] += 1
            if new is m:
                shown[i] = True
            elif kind in ("cut", "similar"):
                shown[i] = False
        elif p.cut is not None:  # a model message with long arguments
            assert isinstance(m, AssistantMessage) and isinstance(p.cut, AssistantMessage)
            new, new_tokens = p.cut, p.cut_tokens
            counts["cut"] += sum(1 for a, b in zip(m.tool_calls, p.cut.tool_calls, strict=True) if a is not b)
        out.append(new)
        tokens.append(new_tokens)
    return Fold(tuple(out), tuple(tokens), sum(span_tokens), counts["superseded"], counts["duplicate"], counts["cut"],
                counts["similar"], tuple(p.line for p in ready if p.line), tuple(p.line_tokens for p in ready if p.line))


def path_of(call: ToolCall | None) -> str | None:
    """The file a path tool's call reads or changes (None for other tools)."""
    if call is None or call.name not in PATH_TOOLS:
        return None
    path = call.arguments.get("path")
    return posixpath.normpath(path) if isinstance(path, str) and path else None


# -- consolidation -------------------------------------------------------------------------------------

ARCHIVE_HEADER = "[Archive of the earlier conversation, consolidated: user messages and your decisions; tool outputs left out]"
ARCHIVE_LINE_TOKENS = 400  # a user message or the model's text in an archive; arguments get ARGUMENT_TOKENS
ARGUMENT_TOKENS = 24
CURRENT_REQUEST = "[The request you are working on now, in full:]"


@functools.cache
def header_tokens() -> int:
    """Tokens of `ARCHIVE_HEADER` (counted on first use, not when the module is imported)."""
    return count(ARCHIVE_HEADER)


def _line(text: str, max_tokens: int = ARCHIVE_LINE_TOKENS) -> str:
    """`text` on one line, its middle cut when it is over `max_tokens` (never made longer)."""
    flat = " ".join(text.split())
    if len(flat) <= max_tokens or count(flat) <= max_tokens:
        return flat
    half = max_tokens * CHARS_PER_TOKEN // 2
    return f"{flat[:half]} […] {flat[-half:]}"


def _call_digest(call: ToolCall) -> str:
    args = ", ".join(f"{k}={_line(v if isinstance(v, str) else str(v), ARGUMENT_TOKENS)}"
                     for k, v in sorted(call.arguments.items()))
    return f"{call.name}({args})"


def is_archive(m: Message) -> bool:
    return isinstance(m, UserMessage) and m.text.startswith(ARCHIVE_HEADER)


def digest(m: Message) -> str:
    """A message's line in an archive ("" for a tool result that succeeded: outputs are left out).
    Made when the message is folded and stored with its chunk, so a consolidation only joins lines."""
    if isinstance(m, UserMessage):
        return f"user: {_line(m.text)}"
    if isinstance(m, AssistantMessage):
        said = f"you: {_line(m.text)}" if m.text else "you:"
        calls = "; ".join(_call_digest(c) for c in m.tool_calls)
        return f"{said} → called {calls}" if calls else said
    return f"  {m.result.name} failed: {_line(m.result.content, 24)}" if m.result.is_error else ""


def consolidate(lines: Sequence[str], line_tokens: Sequence[int], frozen_tokens: int, budget: int,
                current: str | None = None) -> Fold:
    """Every frozen chunk → one archive chunk: a single user message that lists, in order, each user
    message and each decision of the model (its text and the tools it called, with their arguments),
    with a one-line outcome of failed calls: the `digest` lines stored with the chunks when they were
    folded (an earlier archive's lines first), with their estimated tokens. When the archive passes
    half of `budget`, its middle is cut. Nothing is analysed again: the work is joining the lines and
    one count of the result (bounded by `budget`), and it is rare: the frozen prefix then grows again
    from a small base, one cache miss every many turns. `current`: the request the agent is working
    on when it is in the frozen part (no user message is live): it ends the archive in full."""
    kept = [line for line in lines if line]
    text = "\n".join(kept)
    estimated = sum(n for line, n in zip(lines, line_tokens, strict=True) if line) + len(kept)
    if estimated > budget // 2 and (short := head_tail(text, budget // 4, "archive")) is not None:
        text = short
        kept = text.split("\n")
    if current is not None:
        text = f"{text}\n{CURRENT_REQUEST}\n{current}"
    archive = UserMessage(f"{ARCHIVE_HEADER}\n{text}")
    return Fold((archive,), (count(archive.text),), frozen_tokens, 0, 0, 0,
                digest=tuple(kept), digest_tokens=tuple(estimate(line) for line in kept))
