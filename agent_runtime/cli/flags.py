"""Types of `agentctl`'s flags: a checker of the runtime (a token name, a rate) turned into an
argparse type, so a bad value is refused at parse time with the checker's own message (the rule it
broke), not argparse's generic "invalid value"."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from agent_runtime import errors

T = TypeVar("T")


def checked(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type calling `check`; its ValueError or API error is the message the user sees."""

    def parse(value: str) -> T:
        try:
            return check(value)
        except (ValueError, errors.Error) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(check, "__name__", "value")
    return parse
