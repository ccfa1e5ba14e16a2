"""The operator's work queue without asyncio: the retry table (`retry_for`) and the bookkeeping of
keys in flight, retry-at times and unforeseen failures (`WorkQueue.submit` / `settle` /
`forget_due`). The worker loop itself is exercised in test_failures.py."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from agent_operator.workqueue import MAX_RETRY_S, WorkQueue, retry_for
from agent_runtime.kube.client import ApiError
from agent_runtime.kube.folders import FolderBusy


async def _nothing() -> None:
    pass


class Harness:
    def __init__(self, maxsize: int = 10_000) -> None:
        self.now = 100.0
        self.done: list[str] = []
        self.forgotten: list[str] = []
        self.work = WorkQueue(lambda: self.now, self.done.append, self.forgotten.append, maxsize=maxsize)


@pytest.mark.parametrize(("exc", "delay", "forget", "level"), [
    (ApiError(409, "Conflict", "changed"), 0.5, True, logging.WARNING),
    (ApiError(429, "TooManyRequests", "slow down"), 0.5, True, logging.WARNING),
    (ApiError(503, "ServiceUnavailable", "etcd"), 0.5, True, logging.WARNING),
    (ApiError(403, "Forbidden", "no"), 5.0, True, logging.WARNING),
    (ApiError(422, "Invalid", "bad"), 5.0, True, logging.WARNING),
    (aiohttp.ClientConnectionError("refused"), 0.5, True, logging.WARNING),
    (ConnectionRefusedError("refused"), 0.5, True, logging.WARNING),
    (TimeoutError(), 0.5, True, logging.WARNING),
    (FolderBusy("owner.lock held"), 1.0, False, logging.INFO),
])
def test_foreseen_failures_retry_after_a_fixed_delay(exc: Exception, delay: float, forget: bool, level: int) -> None:
    for failures in (0, 3):  # they neither count for nor depend on the backoff
        retry = retry_for("ns/a", exc, failures)
        assert (retry.delay_s, retry.forget_target, retry.level, retry.unforeseen) == (delay, forget, level, False)


def test_a_404_is_not_retried() -> None:
    retry = retry_for("ns/a", ApiError(404, "NotFound", "gone"), 0)
    assert retry.delay_s is None and not retry.forget_target and retry.level == logging.DEBUG
    assert retry.msg % retry.args == "ns/a: gone (404 NotFound: gone)"


def test_unforeseen_failures_back_off_5s_doubling_to_five_minutes() -> None:
    delays = [retry_for("k", RuntimeError("boom"), n).delay_s for n in range(9)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert retry_for("k", RuntimeError("boom"), 10_000).delay_s == MAX_RETRY_S  # no overflow however many
    retry = retry_for("k", KeyError("x"), 1)
    assert retry.unforeseen and retry.forget_target
    assert retry.msg % retry.args == "k: failed (KeyError: 'x'); attempt 2, retrying in 10s"


def test_submit_marks_the_key_in_flight_and_a_full_queue_refuses_without_marking() -> None:
    h = Harness(maxsize=2)
    assert h.work.submit("a", _nothing) and h.work.submit("b", _nothing)
    assert not h.work.submit("c", _nothing)
    assert h.work.inflight == {"a", "b"} and h.work.busy("a") and not h.work.busy("c")
    assert [h.work.queue.get_nowait()[0] for _ in range(2)] == ["a", "b"]


def test_settle_books_retry_times_and_the_backoff() -> None:
    h = Harness()
    for expected in (5.0, 10.0, 20.0):
        h.work.settle("job", RuntimeError("no such thing"))
        assert h.work.retry_at["job"] - h.now == expected
    assert h.work.failures == {"job": 3} and h.forgotten == ["job"] * 3
    h.work.settle("job", ApiError(409, "Conflict", "x"))  # foreseen: the count stays as it was
    assert h.work.failures == {"job": 3} and h.work.retry_at["job"] == h.now + 0.5
    h.work.settle("job", None)  # a success resets the backoff
    assert "job" not in h.work.failures
    h.work.settle("gone", ApiError(404, "NotFound", "x"))
    assert "gone" not in h.work.retry_at and "gone" not in h.forgotten
    h.work.settle("folder", FolderBusy("held"))
    assert h.work.retry_at["folder"] == h.now + 1.0 and "folder" not in h.forgotten  # the target stays


def test_a_key_waiting_to_retry_is_busy_until_its_time_comes() -> None:
    h = Harness()
    h.work.settle("a", ApiError(500, "InternalError", "x"))
    h.work.settle("b", ApiError(403, "Forbidden", "x"))
    assert h.work.busy("a") and h.work.busy("b") and sorted(h.work.retry_times()) == [h.now + 0.5, h.now + 5.0]
    h.work.forget_due(h.now + 0.5)
    assert not h.work.busy("a") and h.work.busy("b")
    h.work.forget_due(h.now + 5.0)
    assert not h.work.retry_at


def test_unforeseen_failures_log_one_line_and_the_trace_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    caplog.set_level(logging.INFO, logger="agent_operator")
    h.work.settle("k", RuntimeError("boom"))
    caplog.set_level(logging.DEBUG, logger="agent_operator")
    h.work.settle("k", RuntimeError("boom"))
    first, second = (r for r in caplog.records if "boom" in r.getMessage())
    assert first.exc_info is None and second.exc_info is not None
    assert first.name == "agent_operator" and "retrying in 5s" in first.getMessage()
