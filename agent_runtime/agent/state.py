"""An agent's derived state: everything the loop needs, rebuilt from its events.

`AgentState.apply(event)` is the only way state changes, live and on replay alike, so a restarted
agent is exactly the agent that was killed. Two parts:

- the conversation (`messages`, what the next prompt carries): rebuilt from the message,
  `tool_call` and `status` events (`CONVERSATION_KINDS`);
- the counters (turns, usage, status): the snapshot holds them, so startup is the latest snapshot
  plus the events after it (`AgentState.restore`).

Snapshots name the conversation instead of copying it (the seqs of the events its messages came
from and of the frozen chunks' `compression` events), so startup reads those events and the ones
after the snapshot, not the whole log; with compression the live tail is bounded, so a snapshot and
a wake cost the same at turn 5 and turn 500.

A user message that arrives while a turn is running is `deferred`: it waits in `pending` and joins
the conversation at the next point where the provider formats allow a user message (after a
complete set of tool results, or after the model's final answer), which the loop then answers.
A turn that ends early (a model error, an interrupt, a limit) releases them into the conversation
at its closing `status idle`; the next turn answers them.

(Over 400 lines on purpose: `apply`, `snapshot` and `restore` are one contract — replaying the
log, or a snapshot plus its tail, must give the same state — and are kept side by side.)
"""

from __future__ import annotations

from typing import Any

from agent_runtime import compression
from agent_runtime.events import Event, EventKind
from agent_runtime.messages import (
    AssistantMessage,
    Message,
    ToolCall,
    ToolResult,
    ToolResultMessage,
    UserMessage,
    decode_message,
)

CONVERSATION_KINDS = (
    EventKind.USER_MESSAGE.value,
    EventKind.ASSISTANT_MESSAGE.value,
    EventKind.TOOL_CALL.value,
    EventKind.TOOL_RESULT.value,
    EventKind.STATUS.value,
    EventKind.APPROVAL_REQUIRED.value,
    EventKind.APPROVAL.value,
    EventKind.COMPRESSION.value,
)
"""The kinds the conversation is rebuilt from: the messages, `tool_call` (marks a call as
started), `status` (a turn's end releases deferred messages), the approvals of open calls, and
`compression` (a frozen chunk replaces the messages it folded)."""
COUNTER_FIELDS = (
    "seq",
    "running",
    "turns",
    "model_calls",
    "turn_model_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "tool_calls",
    "errors",
    "compressions",
    "tokens_folded",
    "cost_units",
    "last_activity",
    "status_reason",
)


class AgentState:
    """Derived state of one agent. Mutated only by `apply`."""

    __slots__ = (
        "messages",
        "message_tokens",
        "pending",
        "pending_tokens",
        "context_tokens",
        "open_call_ids",
        "started_call_ids",
        "approvals",
        "approval_deadlines",
        "frozen",
        "frozen_tokens",
        "chunk_ends",
        "message_paths",
        "message_refs",
        "pending_refs",
        "chunk_seqs",
        "frozen_digest",
        "frozen_digest_tokens",
        "call_paths",
        "live_paths",
        *COUNTER_FIELDS,
    )

    def __init__(self) -> None:
        self.seq = 0
        self.messages: list[Message] = []
        self.message_tokens: list[int] = []
        self.pending: list[UserMessage] = []
        self.pending_tokens: list[int] = []
        self.context_tokens = 0
        self.open_call_ids: list[str] = []
        self.started_call_ids: set[str] = set()
        # Open calls an operator was asked about: tool_call_id -> decision (None: still waiting),
        # and the wall-clock deadline (Unix seconds) of each question.
        self.approvals: dict[str, str | None] = {}
        self.approval_deadlines: dict[str, float] = {}
        # Frozen-prefix compression: the first `frozen` messages are frozen chunks (never changed
        # again), `chunk_ends` the message count at the end of each chunk. Of the live messages,
        # `message_paths` holds the file a tool result read or changed (None for others), and
        # `live_paths` counts those files, so a fold knows what later messages touch without
        # looking at them; `call_paths` is the file of each call of the last model message.
        self.frozen = 0
        self.frozen_tokens = 0
        self.chunk_ends: list[int] = []
        self.message_paths: list[str | None] = []
        # Where each message came from, so a snapshot can name the conversation instead of copying
        # it: the seq of the event of each live (and pending) message (-1 for frozen messages), and
        # the `compression` events whose chunks make up the frozen part.
        self.message_refs: list[int] = []
        self.pending_refs: list[int] = []
        self.chunk_seqs: list[int] = []
        self.frozen_digest: list[str] = []  # the archive lines of the frozen messages (a consolidation joins them)
        self.frozen_digest_tokens: list[int] = []
        self.call_paths: dict[str, str] = {}
        self.live_paths: dict[str, int] = {}
        self.running = False
        self.turns = 0
        self.model_calls = 0
        self.turn_model_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.tool_calls = 0
        self.errors = 0
        self.compressions = 0
        self.tokens_folded = 0
        self.cost_units = 0.0
        self.last_activity = 0.0
        self.status_reason = ""

    # -- the conversation ---------------------------------------------------------------------

    def _add_message(self, message: Message, tokens: int, path: str | None = None, ref: int = -1) -> None:
        self.messages.append(message)
        self.message_tokens.append(tokens)
        self.message_paths.append(path)
        self.message_refs.append(ref)
        if path is not None:
            self.live_paths[path] = self.live_paths.get(path, 0) + 1
        self.context_tokens += tokens

    def tail_tokens(self) -> int:
        """Tokens of the live tail (the messages after the last frozen chunk)."""
        return self.context_tokens - self.frozen_tokens

    def _apply_compression(self, data: dict[str, Any], seq: int) -> None:
        """A frozen chunk replaces the oldest `folded_messages` live messages, or (`consolidated`)
        every frozen chunk."""
        n = int(data["folded_messages"])
        consolidated = bool(data.get("consolidated"))
        start = 0 if consolidated else self.frozen
        end = start + n
        if consolidated and n != self.frozen:
            raise ValueError(f"compression consolidates {n} messages but {self.frozen} are frozen")
        if n < 1 or end > len(self.messages):
            raise ValueError(f"compression folds {n} messages but the live tail has {len(self.messages) - start}")
        chunk = [decode_message(d) for d in data["messages"]]
        tokens = [int(t) for t in data["message_tokens"]]
        if len(chunk) != len(tokens):
            raise ValueError("compression chunk: messages and message_tokens differ in length")
        for path in self.message_paths[start:end]:
            if path is not None:
                left = self.live_paths[path] - 1
                if left:
                    self.live_paths[path] = left
                else:
                    del self.live_paths[path]
        self.context_tokens += sum(tokens) - sum(self.message_tokens[start:end])
        self.messages[start:end] = chunk
        self.message_tokens[start:end] = tokens
        self.message_paths[start:end] = [None] * len(chunk)
        self.message_refs[start:end] = [-1] * len(chunk)
        self.frozen = start + len(chunk)
        if consolidated:
            self.frozen_tokens = sum(tokens)
            self.chunk_ends = [self.frozen]
            self.chunk_seqs = [seq]
            self.frozen_digest, self.frozen_digest_tokens = [], []
        else:
            self.frozen_tokens += sum(tokens)
            self.chunk_ends.append(self.frozen)
            self.chunk_seqs.append(seq)
        self._add_digest(data)

    def _add_digest(self, data: dict[str, Any]) -> None:
        lines = [str(line) for line in data.get("digest", ())]
        counts = [int(n) for n in data.get("digest_tokens", ())]
        if len(counts) != len(lines):
            raise ValueError("compression chunk: digest and digest_tokens differ in length")
        self.frozen_digest.extend(lines)
        self.frozen_digest_tokens.extend(counts)

    def _flush_pending(self) -> None:
        for message, tokens, ref in zip(self.pending, self.pending_tokens, self.pending_refs, strict=True):
            self._add_message(message, tokens, ref=ref)
        self.pending.clear()
        self.pending_tokens.clear()
        self.pending_refs.clear()

    def open_calls(self) -> list[ToolCall]:
        """Tool calls of the last assistant message that have no result yet, in call order."""
        if not self.open_call_ids or not self.messages:
            return []
        for m in reversed(self.messages):
            if isinstance(m, AssistantMessage):
                wanted = set(self.open_call_ids)
                return [c for c in m.tool_calls if c.id in wanted]
        return []

    def _apply_conversation(self, event: Event) -> None:
        data = event.data
        tokens = int(data.get("tokens", 0))
        if event.kind == EventKind.USER_MESSAGE:
            message = UserMessage.from_dict(data)
            if data.get("deferred") and (self.open_call_ids or self._awaiting_model()):
                self.pending.append(message)
                self.pending_tokens.append(tokens)
                self.pending_refs.append(event.seq)
            else:
                self._add_message(message, tokens, ref=event.seq)
        elif event.kind == EventKind.ASSISTANT_MESSAGE:
            answer = AssistantMessage.from_dict(data)
            calls = answer.tool_calls
            self._add_message(answer, tokens, ref=event.seq)
            self.open_call_ids = [c.id for c in calls]
            self.call_paths = {c.id: p for c in calls if (p := compression.path_of(c)) is not None}
            # Calls started while the message was still streaming have their `tool_call` event
            # before the message: keep those of this message, forget any others.
            ids = set(self.open_call_ids)
            self.started_call_ids = {i for i in self.started_call_ids if i in ids}
            self.approvals = {}
            self.approval_deadlines = {}
            if not calls:
                self._flush_pending()
        elif event.kind == EventKind.TOOL_CALL:
            self.started_call_ids.add(data["id"])
        elif event.kind == EventKind.APPROVAL_REQUIRED:
            self.approvals[data["tool_call_id"]] = None
            self.approval_deadlines[data["tool_call_id"]] = float(data.get("deadline", 0.0))
        elif event.kind == EventKind.APPROVAL:
            self.approvals[data["tool_call_id"]] = str(data["decision"])
        elif event.kind == EventKind.STATUS:
            if data.get("state") == "idle":
                # A turn that ended early (error, interrupt, a limit) releases what was deferred
                # into it: those messages join the conversation and the next turn answers them.
                self._flush_pending()
        elif event.kind == EventKind.COMPRESSION:
            self._apply_compression(data, event.seq)
        elif event.kind == EventKind.TOOL_RESULT:
            result = ToolResult.from_dict(data)
            # a failed call (denied, refused, an error) read or changed nothing: it supersedes no read
            path = None if result.is_error else self.call_paths.get(result.tool_call_id)
            self._add_message(ToolResultMessage(result), tokens, path, event.seq)
            if result.tool_call_id in self.open_call_ids:
                self.open_call_ids.remove(result.tool_call_id)
            self.started_call_ids.discard(result.tool_call_id)
            if not self.open_call_ids:
                self._flush_pending()

    def last_assistant(self) -> AssistantMessage | None:
        """The last assistant message (a scan back over at most its tool results)."""
        for m in reversed(self.messages):
            if isinstance(m, AssistantMessage):
                return m
            if not isinstance(m, ToolResultMessage):
                return None
        return None

    def _awaiting_model(self) -> bool:
        """The last message is a user message or complete tool results: the model is (to be) asked."""
        return bool(self.messages) and not isinstance(self.messages[-1], AssistantMessage)

    # -- counters -----------------------------------------------------------------------------

    def _apply_counters(self, event: Event) -> None:
        data = event.data
        kind = event.kind
        self.last_activity = event.ts
        if kind == EventKind.STATUS:
            state = data.get("state")
            if state == "running":
                self.running = True
                self.turn_model_calls = 0
            elif state == "idle":
                if self.running:
                    self.turns += 1
                self.running = False
            self.status_reason = str(data.get("reason", ""))
        elif kind == EventKind.ASSISTANT_MESSAGE:
            self.model_calls += 1
            self.turn_model_calls += 1
        elif kind == EventKind.USAGE:
            self.input_tokens += int(data.get("input_tokens", 0))
            self.output_tokens += int(data.get("output_tokens", 0))
            self.cache_read_tokens += int(data.get("cache_read_tokens", 0))
            self.cache_write_tokens += int(data.get("cache_write_tokens", 0))
            self.cost_units += float(data.get("cost_units", 0.0))
        elif kind == EventKind.COMPRESSION:
            self.compressions += 1
            self.tokens_folded += int(data.get("tokens_before", 0)) - int(data.get("tokens_after", 0))
        elif kind == EventKind.TOOL_CALL:
            self.tool_calls += 1
        elif kind == EventKind.ERROR:
            self.errors += 1

    def apply(self, event: Event) -> None:
        """Apply one committed event (live or replayed). Events must come in `seq` order."""
        if event.seq <= self.seq:
            raise ValueError(f"event seq {event.seq} applied after seq {self.seq}")
        if event.kind in CONVERSATION_KINDS:
            self._apply_conversation(event)
        self._apply_counters(event)
        self.seq = event.seq

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The counters as of `seq`, and the conversation by reference (`conversation_refs`): the
        seqs of the `compression` events of the frozen part and of the events of the live and
        pending messages, plus the open calls' bookkeeping. A few numbers per live message: with
        compression the live tail is bounded, so a snapshot costs the same at turn 5 and turn 500."""
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTER_FIELDS}
        out["conversation"] = {
            "chunks": list(self.chunk_seqs),
            "live": self.message_refs[self.frozen :],
            "pending": list(self.pending_refs),
            "open_call_ids": list(self.open_call_ids),
            "started_call_ids": sorted(self.started_call_ids),
            "approvals": dict(self.approvals),
            "approval_deadlines": dict(self.approval_deadlines),
            "call_paths": dict(self.call_paths),
        }
        return out

    @staticmethod
    def conversation_refs(snapshot: dict[str, Any]) -> list[int] | None:
        """The seqs of the events a snapshot's conversation is rebuilt from (None: an older snapshot
        without one; then the conversation is replayed from the log's start)."""
        conv = snapshot.get("conversation")
        if not isinstance(conv, dict) or any(r < 0 for r in conv.get("live", ())):
            return None
        return [*conv.get("chunks", ()), *conv.get("live", ()), *conv.get("pending", ())]

    def _restore_conversation(self, conv: dict[str, Any], by_seq: dict[int, Event]) -> None:
        def event(seq: int) -> Event:
            try:
                return by_seq[seq]
            except KeyError:
                raise ValueError(f"snapshot names event {seq}, which the log does not have") from None

        for seq in conv.get("chunks", ()):
            data = event(seq).data
            chunk = [decode_message(d) for d in data["messages"]]
            chunk_tokens = [int(t) for t in data["message_tokens"]]
            if data.get("consolidated"):
                self.messages, self.message_tokens, self.chunk_ends, self.chunk_seqs = [], [], [], []
                self.frozen_digest, self.frozen_digest_tokens = [], []
            self._add_digest(data)
            self.messages.extend(chunk)
            self.message_tokens.extend(chunk_tokens)
            self.chunk_ends.append(len(self.messages))
            self.chunk_seqs.append(seq)
        self.frozen = len(self.messages)
        self.frozen_tokens = self.context_tokens = sum(self.message_tokens)
        self.message_paths = [None] * self.frozen
        self.message_refs = [-1] * self.frozen
        paths: dict[str, str] = {}
        for seq in conv.get("live", ()):
            e = event(seq)
            n = int(e.data.get("tokens", 0))
            if e.kind == EventKind.USER_MESSAGE:
                self._add_message(UserMessage.from_dict(e.data), n, ref=seq)
            elif e.kind == EventKind.ASSISTANT_MESSAGE:
                message = AssistantMessage.from_dict(e.data)
                paths.update((c.id, p) for c in message.tool_calls if (p := compression.path_of(c)) is not None)
                self._add_message(message, n, ref=seq)
            elif e.kind == EventKind.TOOL_RESULT:
                result = ToolResult.from_dict(e.data)
                path = None if result.is_error else paths.get(result.tool_call_id)
                self._add_message(ToolResultMessage(result), n, path, seq)
            else:
                raise ValueError(f"snapshot names event {seq} ({e.kind}) as a message")
        for seq in conv.get("pending", ()):
            e = event(seq)
            self.pending.append(UserMessage.from_dict(e.data))
            self.pending_tokens.append(int(e.data.get("tokens", 0)))
            self.pending_refs.append(seq)
        self.open_call_ids = [str(i) for i in conv.get("open_call_ids", ())]
        self.started_call_ids = {str(i) for i in conv.get("started_call_ids", ())}
        self.approvals = {str(k): v for k, v in conv.get("approvals", {}).items()}
        self.approval_deadlines = {str(k): float(v) for k, v in conv.get("approval_deadlines", {}).items()}
        self.call_paths = {str(k): str(v) for k, v in conv.get("call_paths", {}).items()}

    @classmethod
    def restore(cls, snapshot: tuple[int, dict[str, Any]] | None, message_events: list[Event], tail: list[Event]) -> AgentState:
        """Startup: counters from `snapshot`; the conversation from the events it names
        (`conversation_refs`; `message_events` holds them) or, for a snapshot without one, by
        replaying `message_events` (the conversation events with seq ≤ the snapshot's); then every
        event after the snapshot applied in full (`tail`)."""
        state = cls()
        if snapshot is not None:
            _, counters = snapshot
            for name in COUNTER_FIELDS:
                if name in counters:
                    setattr(state, name, counters[name])
            if cls.conversation_refs(counters) is not None:
                state._restore_conversation(counters["conversation"], {e.seq: e for e in message_events})
                message_events = []
        for event in message_events:
            state._apply_conversation(event)
        for event in tail:
            state.apply(event)
        return state
