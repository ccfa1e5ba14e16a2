"""Per-client rate limits through a real server (issue 17, item 7): a WebSocket connection over its
frame or message budget gets a `rate_limited` error frame (with the message `id` and `retry_after`),
nothing of the refused frame is committed, and the connection goes on; HTTP message posts are
limited per token the same way (429 with Retry-After). The buckets themselves: tests/unit/test_ratelimit.py.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from agent_runtime.cli.main import build_parser
from agent_runtime.ratelimit import Rate, RateLimits

if TYPE_CHECKING:
    from conftest import Server, ServerFactory

CHAT = "hello there"  # the simulated model answers without tools: quick turns


def user_message(id_: str) -> dict[str, Any]:
    return {"type": "user_message", "id": id_, "text": CHAT}


def committed_ids(log: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["id"] for e in log if e["kind"] == "user_message"]


@pytest.fixture
async def limited(start_server: ServerFactory) -> Server:
    return await start_server(rate_limits=RateLimits(frames=Rate(per_s=5.0, burst=12), messages=Rate(per_s=2.0, burst=3)))


async def test_messages_over_the_limit_are_refused_and_the_connection_goes_on(limited: Server) -> None:
    server = limited
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        for i in range(3):
            await p.send(user_message(f"m{i}"))
        await p.send(user_message("m3"))  # the fourth at once: over the burst of 3
        acks, refused = [], None
        while len(acks) < 3 or refused is None:
            f = await p.until(lambda f: f["type"] in ("ack", "error"))
            if f["type"] == "ack":
                acks.append(f["id"])
            else:
                refused = f
        assert acks == ["m0", "m1", "m2"]
        assert refused["code"] == "rate_limited" and refused["id"] == "m3", refused
        assert 0 < refused["retry_after"] <= 0.5 and "messages" in refused["message"]
        await asyncio.sleep(refused["retry_after"])
        await p.send(user_message("m3"))  # the same id again: it was never committed
        ack = await p.until(lambda f: f["type"] in ("ack", "error"))
        assert ack["type"] == "ack" and ack["id"] == "m3" and ack["duplicate"] is False, ack
    log = await server.wait_idle(key)
    assert committed_ids(log) == ["m0", "m1", "m2", "m3"]


async def test_a_frame_flood_is_refused_frame_by_frame_and_the_connection_survives(start_server: ServerFactory) -> None:
    server = await start_server(rate_limits=RateLimits(frames=Rate(per_s=5.0, burst=12), messages=Rate(0.0, 0)))
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)  # 1 frame of 12
        for i in range(40):
            await p.send(user_message(f"f{i}") if i % 2 else {"type": "approval", "tool_call_id": f"t{i}", "decision": "allow"})
        got = [await p.until(lambda f: f["type"] in ("ack", "error")) for _ in range(40)]
        limited_frames = [f for f in got if f.get("code") == "rate_limited"]
        assert 25 <= len(limited_frames) <= 32, got  # 11 frames of burst left (plus what refilled meanwhile)
        assert all("frames" in f["message"] and f["retry_after"] > 0 for f in limited_frames)
        acked = [f["id"] for f in got if f["type"] == "ack"]
        assert acked and all(f["code"] in ("rate_limited", "unknown_tool_call") for f in got if f["type"] == "error")
        await asyncio.sleep(1.0)
        await p.send(user_message("after"))
        ack = await p.until(lambda f: f["type"] in ("ack", "error"))
        assert ack["type"] == "ack" and ack["id"] == "after", ack
    log = await server.wait_idle(key)
    assert committed_ids(log) == [*acked, "after"]  # nothing of a refused frame was committed
    assert server.host.metrics.frames_rejected >= len(limited_frames)


async def test_http_message_posts_are_limited_per_token(limited: Server) -> None:
    server = limited
    key = await server.agent()
    path = f"/v1/agents/{key}/messages"
    for i in range(3):
        status, body = await server.request("POST", path, json={"id": f"h{i}", "text": CHAT})
        assert status == 200, body
    async with server.http.post(server.url + path, json={"id": "h3", "text": CHAT}, headers=server.auth()) as resp:
        body = await resp.json()
        assert resp.status == 429 and body["code"] == "rate_limited" and body["id"] == "h3", body
        assert int(resp.headers["Retry-After"]) >= 1 and 0 < body["retry_after"] <= 0.5
    other = server.token("operator", "default")  # another token has its own budget
    status, body = await server.request("POST", path, token=other, json={"id": "o1", "text": CHAT})
    assert status == 200, body
    await asyncio.sleep(body_wait := 0.6)
    status, body = await server.request("POST", path, json={"id": "h3", "text": CHAT})
    assert status == 200 and body["duplicate"] is False, (body_wait, body)
    log = await server.wait_idle(key)
    assert sorted(committed_ids(log)) == ["h0", "h1", "h2", "h3", "o1"]


async def test_the_default_limits_let_a_busy_normal_client_through(server: Server) -> None:
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        for i in range(150):
            await p.send(user_message(f"n{i}"))
        got = [await p.until(lambda f: f["type"] in ("ack", "error")) for _ in range(150)]
    assert [f["type"] for f in got] == ["ack"] * 150 or all(f.get("code") == "busy" for f in got if f["type"] == "error")
    assert not [f for f in got if f.get("code") == "rate_limited"]


def test_agentctl_serve_takes_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["serve", "--frame-rate", "7/70", "--message-rate", "0.5/4"])
    assert RateLimits(args.frame_rate, args.message_rate) == RateLimits(frames=Rate(7.0, 70), messages=Rate(0.5, 4))
    args = build_parser().parse_args(["serve"])
    assert RateLimits(args.frame_rate, args.message_rate) == RateLimits()
    args = build_parser().parse_args(["serve", "--frame-rate", "0", "--message-rate", "3"])
    assert args.frame_rate.unlimited and args.message_rate == Rate(3.0, 30)  # burst: ten seconds' worth
    for bad in ["-1", "x", "5/0.5", "inf", "5/x"]:
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--message-rate", bad])
        assert "PER_S[/BURST]" in capsys.readouterr().err, bad
