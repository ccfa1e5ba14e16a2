"""Retry hints from every provider, backoff and the per-agent retry budget."""

from __future__ import annotations

import random

from agent_runtime.providers.retry import RetryBudget, backoff_delay, gemini_retry_delay, retry_hint


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_hint({"Retry-After-Ms": "250", "retry-after": "7"}) == 0.25
    assert retry_hint({"retry-after": "7"}) == 7.0
    assert retry_hint({"retry-after": "1.5"}) == 1.5


def test_retry_after_http_date() -> None:
    assert retry_hint({"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"}, now_epoch=1445412480.0) == 5.0
    assert retry_hint({"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"}, now_epoch=1445412490.0) == 0.0


def test_bad_hints_are_no_hint() -> None:
    assert retry_hint({"retry-after": "soon"}) is None
    assert retry_hint({"retry-after-ms": "-5"}) is None
    assert retry_hint({"retry-after": "nan"}) is None
    assert retry_hint({}) is None


def test_gemini_retry_info() -> None:
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"}]}}
    assert gemini_retry_delay(body) == 36.0
    assert retry_hint({}, body) == 36.0
    assert gemini_retry_delay({"error": {"details": [{"@type": "x.RetryInfo", "retryDelay": "0.5s"}]}}) is None
    assert gemini_retry_delay("not a body") is None


def test_backoff_honours_hint_capped_and_otherwise_grows_with_jitter() -> None:
    assert backoff_delay(0, base_s=0.5, cap_s=30, hint_s=2.0) == 2.0
    assert backoff_delay(0, base_s=0.5, cap_s=30, hint_s=3600.0) == 30
    rng = random.Random(1)
    delays = [backoff_delay(a, base_s=0.5, cap_s=30, hint_s=None, rng=rng) for a in range(8)]
    for attempt, d in enumerate(delays):
        nominal = min(30, 0.5 * 2**attempt)
        assert 0.5 * nominal <= d < 1.5 * nominal


def test_budget_spends_and_refills() -> None:
    budget = RetryBudget(capacity=2, refill_per_s=0.5)
    assert budget.try_spend(0.0) and budget.try_spend(0.0)
    assert not budget.try_spend(0.0)
    assert not budget.try_spend(1.0)  # half a retry back
    assert budget.try_spend(2.0)
    assert budget.try_spend(100.0) and budget.try_spend(100.0) and not budget.try_spend(100.0)  # capped at capacity
