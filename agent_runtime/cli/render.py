"""Event frames → terminal lines, shared by `agentctl attach` and `agentctl logs`. Pure."""

from __future__ import annotations

import json
from typing import Any

DIM, BOLD, CYAN, GREEN, RED, YELLOW, RESET = "\033[2m", "\033[1m", "\033[36m", "\033[32m", "\033[31m", "\033[33m", "\033[0m"


def _short(text: str, width: int = 160) -> str:
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_event(frame: dict[str, Any], color: bool = True, streamed: bool = False) -> str | None:
    """One line (or None to print nothing) for an `event` frame.

    `streamed`: the assistant text was already printed from deltas, so print only what follows it.
    """
    c = (lambda code, s: f"{code}{s}{RESET}") if color else (lambda code, s: s)
    kind, data, seq = frame.get("kind"), frame.get("data", {}), frame.get("seq")
    tag = c(DIM, f"[{seq:>5}]")
    if kind == "user_message":
        return f"{tag} {c(BOLD, 'you')}  {data.get('text', '')}"
    if kind == "assistant_message":
        calls = data.get("tool_calls") or []
        text = "" if streamed else f" {data.get('text', '')}"
        suffix = c(DIM, f"  ({len(calls)} tool call{'s' if len(calls) != 1 else ''})") if calls else ""
        return f"{tag} {c(CYAN, 'agent')}{text}{suffix}"
    if kind == "tool_call":
        args = json.dumps(data.get("arguments", {}), ensure_ascii=False)
        return f"{tag} {c(YELLOW, '⚙ ' + str(data.get('name')))} {_short(args, 120)}"
    if kind == "tool_result":
        mark = c(RED, "✗") if data.get("is_error") else c(GREEN, "✓")
        return f"{tag} {mark} {data.get('name')}: {_short(str(data.get('content', '')))}"
    if kind == "usage":
        return c(DIM, f"{tag} usage in={data.get('input_tokens')} out={data.get('output_tokens')} "
                      f"cache_read={data.get('cache_read_tokens')} cache_write={data.get('cache_write_tokens')}"
                      + (f" cached={data['cached_share']:.0%} cost={data.get('cost_units')}" if "cached_share" in data else ""))
    if kind == "compression":
        return c(DIM, f"{tag} compression chunk {data.get('chunk')}: {data.get('folded_messages')} messages, "
                      f"{data.get('tokens_before')} → {data.get('tokens_after')} tokens "
                      f"(superseded {data.get('superseded', 0)}, duplicates {data.get('duplicates', 0)}, "
                      f"cut {data.get('truncated', 0)})")
    if kind == "status":
        return c(DIM, f"{tag} status {data.get('state')} {data.get('reason', '')}".rstrip())
    if kind == "error":
        return f"{tag} {c(RED, 'error ' + str(data.get('code')))}: {data.get('message')}"
    return f"{tag} {kind} {_short(json.dumps(data, ensure_ascii=False))}"
