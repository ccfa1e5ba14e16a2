"""The operator's one work queue: per-key jobs, the keys in flight, and when a failed key may retry.

Every apiserver write the controller makes (an Agent's status, a finalizer, a pool's objects or
status, a draining mark) is a job under a key (`ns/name` for an Agent, `pool:ns/name`, ...). A key
is *in flight* from `submit` until its job ends; a failed job's key waits until its *retry-at*
time (the planner plans it again after that). The queue is bounded: `submit` answers False when
it is full, and the caller leaves its state as it was so the next step submits that key again.

What a failure means is one table, `retry_for` (pure, tested without asyncio): an apiserver
refusal is retried after 0.5 s (conflict, throttling, server trouble) or 5 s; an unreachable
apiserver or shard after 0.5 s; a busy folder (a shard still holds the agent) after 1 s; anything
unforeseen after 5 s, 10 s, 20 s ... up to MAX_RETRY_S (`agent_runtime.backoff.Backoff`), one
log line per failure and the stack trace only at DEBUG. A 404 is not retried (the object is gone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent_runtime.backoff import Backoff
from agent_runtime.kube import folders
from agent_runtime.kube.client import ApiError

log = logging.getLogger("agent_operator")
Job = Callable[[], Coroutine[Any, Any, None]]

MAX_RETRY_S = 300.0
RETRY_RETRYABLE_S = 0.5  # an apiserver answer that says "again" (409, 429, 5xx), or no answer at all
RETRY_REFUSED_S = 5.0  # any other refusal (403 for a pool outside the operator's namespaces, 422...)
RETRY_BUSY_S = 1.0  # the agent's folder is still locked by a shard
UNFORESEEN = Backoff(first_s=5.0, cap_s=MAX_RETRY_S, jitter=False)  # 5 s doubling to MAX_RETRY_S


@dataclass(frozen=True, slots=True)
class Retry:
    """What to do after a job failed: wait `delay_s` (None: do not retry, the object is gone),
    whether the agent's pending target is forgotten (it may not be where the job meant to put it),
    and the log line (`level`, `msg` % `args`). `unforeseen`: the failure counts for the backoff."""

    delay_s: float | None
    forget_target: bool
    level: int
    msg: str
    args: tuple[object, ...]
    unforeseen: bool = False


def retry_for(key: str, exc: Exception, failures: int) -> Retry:
    """The retry for `key`'s job failing with `exc`; `failures`: its unforeseen failures before this one."""
    if isinstance(exc, ApiError):
        if exc.status == 404:
            return Retry(None, False, logging.DEBUG, "%s: gone (%s)", (key, exc))
        return Retry(RETRY_RETRYABLE_S if exc.retryable else RETRY_REFUSED_S, True, logging.WARNING,
                     "%s: %s; retrying", (key, exc))
    if isinstance(exc, (aiohttp.ClientError, OSError, TimeoutError)):  # apiserver (or shard) unreachable
        return Retry(RETRY_RETRYABLE_S, True, logging.WARNING, "%s: %r; retrying", (key, exc))
    if isinstance(exc, folders.FolderBusy):
        return Retry(RETRY_BUSY_S, False, logging.INFO, "%s: %s; retrying", (key, exc))
    n = failures + 1  # unforeseen: one line per failure, backoff 5 s doubling to 5 min
    delay = UNFORESEEN.delay(n - 1)
    return Retry(delay, True, logging.WARNING, "%s: failed (%s: %s); attempt %d, retrying in %.0fs",
                 (key, type(exc).__name__, exc, n, delay), unforeseen=True)


class WorkQueue:
    """Jobs by key, run by `worker()` tasks. `on_done(key)` is called after every job (the planner
    wakes); `on_retry(key)` after a failure whose retry forgets the agent's pending target."""

    def __init__(self, clock: Callable[[], float], on_done: Callable[[str], None],
                 on_retry: Callable[[str], None], maxsize: int = 10_000) -> None:
        self.clock = clock
        self.on_done = on_done
        self.on_retry = on_retry
        self.queue: asyncio.Queue[tuple[str, Job]] = asyncio.Queue(maxsize=maxsize)
        self.inflight: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}  # key -> consecutive unforeseen failures (backoff)

    def busy(self, key: str) -> bool:
        """In flight, or failed and waiting for its retry-at time."""
        return key in self.inflight or key in self.retry_at

    def submit(self, key: str, job: Job) -> bool:
        """Queue `job`; False when the queue is full (the caller leaves its state as it was, and the
        next step, woken as workers finish, plans that key again)."""
        if self.queue.full():
            return False
        self.inflight.add(key)
        self.queue.put_nowait((key, job))
        return True

    def forget_due(self, now: float) -> None:
        """Drop the retry-at times that have come (those keys may be planned again)."""
        self.retry_at = {k: t for k, t in self.retry_at.items() if t > now}

    def retry_times(self) -> Iterable[float]:
        return self.retry_at.values()

    def settle(self, key: str, exc: Exception | None) -> None:
        """Book a job's end: a success resets the key's backoff; a failure logs one line and sets
        when the key may retry. (The key stays in flight until the worker's `finally`.)"""
        if exc is None:
            self.failures.pop(key, None)
            return
        retry = retry_for(key, exc, self.failures.get(key, 0))
        if retry.unforeseen:
            self.failures[key] = self.failures.get(key, 0) + 1
            log.log(retry.level, retry.msg, *retry.args, exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
        else:
            log.log(retry.level, retry.msg, *retry.args)
        if retry.delay_s is None:
            return
        self.retry_at[key] = self.clock() + retry.delay_s
        if retry.forget_target:
            self.on_retry(key)

    async def worker(self) -> None:
        while True:
            key, job = await self.queue.get()
            try:
                await job()
            except Exception as exc:  # noqa: BLE001 - every failure is booked and retried by `retry_for`
                self.settle(key, exc)
            else:
                self.settle(key, None)
            finally:
                self.inflight.discard(key)
                self.on_done(key)
