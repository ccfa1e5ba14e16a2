"""Failures the operator and the shards did not foresee: a readable status, backoff, no stack trace
loop. A spec the runtime refuses in an unforeseen way is a Failed Agent, not an exception out of the
watch handler; a job that keeps failing is retried 5, 10, 20 ... s apart, one log line each; a
shard's Failed (it could not activate the agent) is not overwritten by the operator's Placed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agent_operator import agents as agents_mod
from agent_operator.agents import agent_view, placement_patch
from agent_operator.controller import Controller, Settings
from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig
from agent_runtime.kube.placement_watch import RETRY, retry_delay

NOW = "2026-11-25T10:00:00Z"


def body(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "7", "generation": 1},
            "spec": {"model": {"provider": "simulated"}}, "status": status}


def test_a_validator_failing_in_an_unforeseen_way_is_a_readable_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exploding:
        @staticmethod
        def model_validate(spec: dict[str, Any]) -> None:
            raise KeyError("budget")

    monkeypatch.setattr(agents_mod, "AgentSpec", Exploding)
    view = agent_view(body())  # used to raise out of the kopf watch handler
    assert view.spec_error == "spec: the runtime cannot parse it (KeyError: 'budget')"


def test_the_operator_keeps_a_shards_failed_while_the_agent_stays_there() -> None:
    failed = agent_view(body(shard="p-0", phase="Failed", conditions=[
        {"type": "Placed", "status": "True", "reason": "Placed", "message": "placed on shard p-0"},
        {"type": "Ready", "status": "False", "reason": "ActivationFailed", "message": "OSError: disk full"}]))
    assert placement_patch(failed, "p-0", NOW) is None
    moved = placement_patch(failed, "p-1", NOW)  # re-placed elsewhere: a fresh start
    assert moved is not None and moved["status"]["phase"] == "Placed"


def test_shard_retry_backoff_doubles_to_a_minute() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(100) == RETRY.cap_s == 60


async def test_a_failing_job_backs_off_with_one_line_and_no_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    ctl = Controller(KubeClient(KubeConfig("http://127.0.0.1:9")), Settings(namespaces=("ns",), manage_pools=False),
                     clock=lambda: now[0])
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("no such thing")

    worker = asyncio.create_task(ctl.work.worker())
    caplog.set_level(logging.INFO, logger="agent_operator")
    try:
        delays = []
        for _ in range(3):
            ctl.work.submit("job", broken)
            while "job" in ctl.work.inflight:
                await asyncio.sleep(0)
            delays.append(ctl.work.retry_at["job"] - now[0])
        assert delays == [5.0, 10.0, 20.0] and calls == 3

        async def fine() -> None:
            pass

        ctl.work.submit("job", fine)
        while "job" in ctl.work.inflight:
            await asyncio.sleep(0)
        assert "job" not in ctl.work.failures  # (a success resets the backoff)
    finally:
        worker.cancel()
    lines = [r for r in caplog.records if "no such thing" in r.getMessage()]
    assert len(lines) == 3 and all(r.exc_info is None for r in lines)
    assert "RuntimeError: no such thing" in lines[0].getMessage() and "retrying in 5s" in lines[0].getMessage()
