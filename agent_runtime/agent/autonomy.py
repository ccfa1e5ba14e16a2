"""Autonomy rules: may the agent run this tool call on its own, must it ask, or is it refused?

Sans-IO and pure: `AutonomyPolicy(spec.autonomy).decide(name, arguments, read_only=...)` returns a
`Verdict`. The policy is evaluated in a fixed order, whatever the order of the rules in the spec:
every `deny` rule first, then every `ask` rule, then every `allow` rule; the first matching rule of
the first class with a match decides, and `defaultAction` decides when no rule matches. So a
`deny` can never be overridden by an `allow` written before it.

A rule matches a call when all its matchers match:

- `tool`: an fnmatch glob on the tool name (`*` for any tool);
- `arguments`: argument name -> glob on its value. Strings are matched as they are, other values as
  compact JSON (`true`, `3`, `["a"]`). A `path` value is normalised first (`src/../x` is `x`,
  `./src/a` is `src/a`), so a rule on `src/*` is not fooled by `src/../secrets`. `*` matches `/` too
  (fnmatch), so `src/*` covers the whole `src/` tree. A listed argument the call lacks: no match.
- `readOnly`: true / false to match only tools that do / do not declare the read-only hint.

Used by the actor (`agent_runtime.agent.actor`) on each tool call the moment it is complete in the
stream; the verdict decides whether it starts, waits for an operator or gets an error result.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import posixpath
import re
from typing import Any, Literal

from agent_runtime.manifest import Autonomy, AutonomyRule

__all__ = ["AutonomyPolicy", "Verdict"]

Action = Literal["deny", "ask", "allow"]
_ORDER: tuple[Action, ...] = ("deny", "ask", "allow")
_PATH_KEYS = frozenset({"path"})


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one call. `rule` is the index of the deciding rule in the spec (None: the
    default action); `reason` is a sentence for the transcript and the model."""

    action: Action
    rule: int | None
    reason: str


def _normalise_path(value: str) -> str:
    if not value:
        return value
    norm = posixpath.normpath(value)
    return norm[2:] if norm.startswith("./") else norm


def _as_text(key: str, value: Any) -> str:
    if isinstance(value, str):
        return _normalise_path(value) if key in _PATH_KEYS else value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class _Compiled:
    __slots__ = ("args", "index", "read_only", "rule", "tool")

    def __init__(self, index: int, rule: AutonomyRule) -> None:
        self.index = index
        self.rule = rule
        self.tool = re.compile(fnmatch.translate(rule.tool))
        self.args = tuple((k, re.compile(fnmatch.translate(v), re.DOTALL)) for k, v in rule.arguments.items())
        self.read_only = rule.read_only

    def matches(self, name: str, arguments: dict[str, Any], read_only: bool) -> bool:
        if not self.tool.match(name):
            return False
        if self.read_only is not None and self.read_only != read_only:
            return False
        for key, pattern in self.args:
            if key not in arguments or not pattern.match(_as_text(key, arguments[key])):
                return False
        return True

    def describe(self) -> str:
        parts = [f"tool {self.rule.tool!r}"]
        parts += [f"{k} {v!r}" for k, v in self.rule.arguments.items()]
        if self.read_only is not None:
            parts.append(f"readOnly {str(self.read_only).lower()}")
        return f"rule {self.index} ({self.rule.action}: {', '.join(parts)})"


class AutonomyPolicy:
    """The compiled autonomy rules of one agent spec."""

    __slots__ = ("_by_action", "spec")

    def __init__(self, spec: Autonomy) -> None:
        self.spec = spec
        compiled = [_Compiled(i, r) for i, r in enumerate(spec.rules)]
        self._by_action = {a: tuple(c for c in compiled if c.rule.action == a) for a in _ORDER}

    def decide(self, name: str, arguments: dict[str, Any], *, read_only: bool = False) -> Verdict:
        for action in _ORDER:
            for rule in self._by_action[action]:
                if rule.matches(name, arguments, read_only):
                    return Verdict(action, rule.index, f"{action} by {rule.describe()}")
        action = self.spec.default_action
        return Verdict(action, None, f"{action} by the default action (no rule matched)")
