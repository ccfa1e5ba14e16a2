"""The WebSocket protocol against a real server: hello/welcome and replay, live turns with real
tool subprocesses, idempotent user messages, exact reconnects by cursor, several clients,
attaching mid-message, interrupts, typed errors for every bad frame, and backpressure (a client
that does not read is dropped with 1013 and catches up by cursor; the agent and others are not
affected). Contract: /work/shared/design/protocol.md and docs/protocol.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest

from agent_runtime.server import ws as server_module
from agent_runtime.agent.actor import ActorConfig
from agent_runtime.messages import UserMessage
from agent_runtime.protocol import frames

if TYPE_CHECKING:
    from conftest import Peer, Server, ServerFactory

TASK = "task: write fib"  # makes the simulated model do a real coding task (tool subprocesses)

TURN_KINDS = ["user_message", "status", "assistant_message", "usage", "tool_call", "tool_result"]


def is_idle(frame: dict[str, Any]) -> bool:
    return frame["type"] == "event" and frame["kind"] == "status" and frame["data"].get("state") == "idle"


def transcript(events: list[dict[str, Any]]) -> list[tuple[int, str, Any]]:
    return [(e["seq"], e["kind"], e["data"]) for e in events]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


def assert_gap_free(events: list[dict[str, Any]], start: int = 1) -> None:
    assert [e["seq"] for e in events] == list(range(start, start + len(events)))


def user_message(id_: str, text: str = TASK) -> dict[str, Any]:
    return {"type": "user_message", "id": id_, "text": text}


# -- hello, replay, a live turn ----------------------------------------------------------------


async def test_live_turn_streams_every_event_gap_free(server: Server) -> None:
    key = await server.agent()
    async with server.peer(key) as p:
        welcome = await p.hello(0)
        assert welcome == {"type": "welcome", "protocol": 1, "head": 0, "agent": key, "role": "operator"}
        await p.send(user_message("m1"))
        await p.until_idle()
        ack = next(f for f in p.frames if f["type"] == "ack")
        assert ack == {"type": "ack", "id": "m1", "seq": 1, "duplicate": False}

    ev = p.events
    assert_gap_free(ev)
    assert ev[0]["kind"] == "user_message" and ev[0]["data"]["text"] == TASK and ev[0]["data"]["id"] == "m1"
    assert ev[1]["kind"] == "status" and ev[1]["data"]["state"] == "running"
    assert ev[-1]["kind"] == "status" and ev[-1]["data"] == {"state": "idle", "reason": "end_turn"}
    assert set(TURN_KINDS) <= set(kinds(ev))
    # Every tool call got a result from a real subprocess/file operation, after its call.
    calls = {e["data"]["id"]: e["seq"] for e in ev if e["kind"] == "tool_call"}
    results = {e["data"]["tool_call_id"]: e for e in ev if e["kind"] == "tool_result"}
    assert calls and calls.keys() == results.keys()
    assert all(results[c]["seq"] > s and not results[c]["data"]["is_error"] for c, s in calls.items())
    assert any(r["data"]["name"] == "shell" and "[exit code 0]" in r["data"]["content"] for r in results.values())
    # Each model call (assistant_message) has exactly one usage before the next call or the end of
    # the turn; every streamed message arrived as deltas equal to its final text.
    starts = [i for i, e in enumerate(ev) if e["kind"] == "assistant_message"]
    for i, j in zip(starts, [*starts[1:], len(ev)], strict=True):
        assert kinds(ev[i:j]).count("usage") == 1, kinds(ev[i:j])
        assert p.text_of(ev[i]["data"]["id"]) == ev[i]["data"]["text"]
    assert len(starts) >= 3 and kinds(ev).count("usage") == len(starts)
    # The live stream is exactly the log.
    assert transcript(ev) == transcript(await server.events(key))


async def test_hello_zero_replays_every_event_in_order(server: Server) -> None:
    key = await server.agent()
    await server.host.user_message(key, "m1", TASK)
    log = await server.wait_idle(key)
    await server.host.user_message(key, "m2", "task: primes")
    log = await server.wait_idle(key)
    head = log[-1]["seq"]
    async with server.peer(key) as p:
        welcome = await p.hello(0)
        assert welcome["head"] == head and welcome["protocol"] == 1
        while p.cursor < head:
            await p.recv()
        assert await p.quiet(0.3) == []
    assert transcript(p.events) == transcript(log)
    assert_gap_free(p.events)
    assert [f["type"] for f in p.frames] == ["welcome"] + ["event"] * head  # replay has no deltas


async def test_duplicate_user_message_is_acked_with_original_seq_and_applied_once(server: Server) -> None:
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send(user_message("same-id"))
        first = await p.until(lambda f: f["type"] == "ack")
        await p.until_idle()
        await p.send(user_message("same-id", "a different text, same id"))
        second = await p.until(lambda f: f["type"] == "ack")
        assert await p.quiet(0.3) == []  # no new turn
    assert first == {"type": "ack", "id": "same-id", "seq": 1, "duplicate": False}
    assert second == {"type": "ack", "id": "same-id", "seq": 1, "duplicate": True}
    log = await server.events(key)
    assert [e["data"]["id"] for e in log if e["kind"] == "user_message"] == ["same-id"]
    assert sum(1 for e in log if e["kind"] == "status" and e["data"]["state"] == "running") == 1

    # Also after a reconnect (the case idempotency exists for).
    async with server.peer(key) as p2:
        await p2.hello(log[-1]["seq"])
        await p2.send(user_message("same-id"))
        again = await p2.until(lambda f: f["type"] == "ack")
    assert again == {"type": "ack", "id": "same-id", "seq": 1, "duplicate": True}
    assert await server.events(key) == log

    # Two clients racing with one new id: committed once, one of them is told it is a duplicate.
    async with server.peer(key) as a, server.peer(key) as b:
        await a.hello(log[-1]["seq"])
        await b.hello(log[-1]["seq"])
        await asyncio.gather(a.send(user_message("race")), b.send(user_message("race")))
        acks = [await a.until(lambda f: f["type"] == "ack"), await b.until(lambda f: f["type"] == "ack")]
        await a.until_idle()
    assert {x["seq"] for x in acks} == {log[-1]["seq"] + 1}
    assert sorted(x["duplicate"] for x in acks) == [False, True]
    log = await server.wait_idle(key)
    assert [e["data"]["id"] for e in log if e["kind"] == "user_message"] == ["same-id", "race"]


async def test_reconnect_with_cursor_gets_exactly_the_missing_events(server: Server) -> None:
    key = await server.agent()
    await server.host.user_message(key, "m1", TASK)
    log = await server.wait_idle(key)
    head = log[-1]["seq"]
    for k in (0, 1, 5, head - 1, head):
        async with server.peer(key) as p:
            welcome = await p.hello(k)
            assert welcome["head"] == head
            while p.cursor < head:
                await p.recv()
            assert await p.quiet(0.15) == []
        assert transcript(p.events) == transcript(log[k:]), k

    # A cursor past the head is not this agent's transcript: bad_frame on `cursor`.
    async with server.peer(key) as p:
        await p.send({"type": "hello", "cursor": head + 10})
        err = await p.recv()
        assert err["type"] == "error" and err["code"] == "bad_frame" and err["field"] == "cursor"


async def test_reconnect_mid_turn_ends_with_the_transcript_of_a_client_that_stayed(slow_server: Server) -> None:
    server = slow_server
    key = await server.agent()
    async with server.peer(key) as stayed:
        await stayed.hello(0)
        pieces: list[dict[str, Any]] = []
        async with server.peer(key) as flaky:
            await flaky.hello(0)
            await flaky.send(user_message("m1"))
            await flaky.until(lambda f: f["type"] == "event" and f["kind"] == "tool_call")
            pieces += flaky.events
        cursor = pieces[-1]["seq"]
        await asyncio.sleep(0.3)  # the agent keeps going while this client is away
        async with server.peer(key) as flaky:
            await flaky.hello(cursor)
            await flaky.until_idle()
            pieces += flaky.events
        await stayed.until_idle()
    assert_gap_free(pieces)
    assert transcript(pieces) == transcript(stayed.events) == transcript(await server.events(key))


async def test_disconnecting_after_every_frame_loses_and_duplicates_nothing(slow_server: Server) -> None:
    """Disconnect after each received frame, reconnect with the cursor: the pieces are the log."""
    server = slow_server
    key = await server.agent()
    status, _ = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "m1", "text": TASK})
    assert status == 200
    pieces: list[dict[str, Any]] = []
    reconnects = 0
    async with asyncio.timeout(60):
        while not (pieces and is_idle(pieces[-1])):
            async with server.peer(key) as p:
                await p.hello(pieces[-1]["seq"] if pieces else 0)
                reconnects += 1
                while not p.events:
                    await p.recv()
            for message_id in p.deltas:
                p.text_of(message_id)  # each connection's text of a message starts at offset 0
            pieces += p.events
    assert reconnects == len(pieces)
    assert_gap_free(pieces)
    assert transcript(pieces) == transcript(await server.events(key))


async def test_events_committed_during_catch_up_are_sent_once(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server subscribes before it reads the log, so live and catch-up overlap: no duplicates."""
    key = await server.agent()
    await server.host.user_message(key, "m1", TASK)
    await server.wait_idle(key)
    read = server.host.read_events
    turn_done = asyncio.Event()

    async def slow_read(k: str, after: int, limit: int | None = None) -> Any:
        await turn_done.wait()  # a whole turn is committed (and queued live) before catch-up reads
        return await read(k, after, limit)

    monkeypatch.setattr(server.host, "read_events", slow_read)
    async with server.peer(key) as p:
        await p.hello(0)
        async with asyncio.timeout(10):
            while not server.host.get(key).hub.subscribers:
                await asyncio.sleep(0.01)
        seq, _ = await server.host.user_message(key, "m2", "task: sort")
        async with asyncio.timeout(10):
            while server.state(key).running:
                await asyncio.sleep(0.01)
        log = [e.to_frame() for e in await read(key, 0)]
        assert log[-1]["kind"] == "status" and log[-1]["seq"] > seq + 5
        turn_done.set()
        while p.cursor < log[-1]["seq"]:
            await p.recv()
        assert await p.quiet(0.3) == []
    assert_gap_free(p.events)
    assert transcript(p.events) == transcript(log)


async def test_catch_up_reads_the_log_in_pages(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await server.agent()
    await server.host.user_message(key, "m1", TASK)
    log = await server.wait_idle(key)
    for page in (1, 3, len(log), len(log) - 1):
        monkeypatch.setattr(server_module, "CATCH_UP_PAGE", page)
        for cursor in (0, 2):
            async with server.peer(key) as p:
                await p.hello(cursor)
                while p.cursor < len(log):
                    await p.recv()
                assert await p.quiet(0.05) == []
            assert transcript(p.events) == transcript(log[cursor:]), (page, cursor)


async def test_a_hibernated_agent_wakes_for_a_client_with_its_history(start_server: ServerFactory) -> None:
    server = await start_server(actor=ActorConfig(idle_timeout_s=0.2))
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send(user_message("m1"))
        await p.until_idle()
    first = p.events
    async with asyncio.timeout(10):
        while server.host.get(key).phase() != "hibernated":
            await asyncio.sleep(0.05)
    wakes = server.host.get(key).wakes
    async with server.peer(key) as p:
        welcome = await p.hello(0)
        assert welcome["head"] == first[-1]["seq"]
        while p.cursor < welcome["head"]:
            await p.recv()
        assert transcript(p.events) == transcript(first)
        await p.send(user_message("m1"))  # still a duplicate after hibernation
        assert (await p.until(lambda f: f["type"] == "ack"))["duplicate"] is True
        await p.send(user_message("m2", "task: primes"))
        ack = await p.until(lambda f: f["type"] == "ack")
        assert ack == {"type": "ack", "id": "m2", "seq": welcome["head"] + 1, "duplicate": False}
        await p.until_idle()
    assert server.host.get(key).wakes == wakes + 1
    assert_gap_free(p.events)
    assert server.state(key).turns == 2


async def test_cursor_and_idempotency_survive_a_server_restart(start_server: ServerFactory, tmp_path: Path) -> None:
    server = await start_server(data_dir=tmp_path / "data")
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send(user_message("m1"))
        await p.until(lambda f: f["type"] == "event" and f["kind"] == "tool_call")
    kept = p.events
    log1 = await server.wait_idle(key)
    admin = server.admin
    await server.stop()

    server = await start_server(data_dir=tmp_path / "data")  # agents, logs and tokens are on disk
    assert server.admin == admin and key in server.host.handles
    async with server.peer(key) as p:
        welcome = await p.hello(kept[-1]["seq"])
        assert welcome["head"] == log1[-1]["seq"]
        await p.send(user_message("m1"))
        ack = await p.until(lambda f: f["type"] == "ack")
        assert ack == {"type": "ack", "id": "m1", "seq": 1, "duplicate": True}
        while p.cursor < welcome["head"]:
            await p.recv()
        assert await p.quiet(0.2) == []
    assert transcript(kept + p.events) == transcript(log1) == transcript(await server.events(key))


async def test_an_aborted_connection_is_cleaned_up(server: Server) -> None:
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        assert server.host.metrics.clients_connected == 1 and len(server.host.get(key).hub.subscribers) == 1
        conn = p.ws._response.connection  # noqa: SLF001 - a TCP reset, not a close
        transport = conn.transport if conn is not None else None
        assert transport is not None
        transport.abort()
    async with asyncio.timeout(5):
        while server.host.metrics.clients_connected or server.host.get(key).hub.subscribers:
            await asyncio.sleep(0.02)
    # The agent is unaffected.
    status, body = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "m1", "text": TASK})
    assert status == 200 and body["seq"] == 1
    await server.wait_idle(key)


async def test_two_clients_get_the_same_transcript(server: Server) -> None:
    key = await server.agent()
    async with server.peer(key) as a, server.peer(key) as b:
        await a.hello(0)
        await b.hello(0)
        await a.send(user_message("from-a"))
        await a.until_idle()
        await b.until_idle()
        await b.send(user_message("from-b", "task: sort"))
        await a.until_idle()
        await b.until_idle()
        assert await a.quiet(0.1) == [] and await b.quiet(0.1) == []
    assert [f["id"] for f in a.frames if f["type"] == "ack"] == ["from-a"]
    assert [f["id"] for f in b.frames if f["type"] == "ack"] == ["from-b"]
    assert transcript(a.events) == transcript(b.events) == transcript(await server.events(key))
    assert_gap_free(a.events)
    assert sum(1 for e in a.events if is_idle(e)) == 2


async def test_pipelined_hello_and_user_message(server: Server) -> None:
    """A client may send hello and a user_message without waiting for welcome."""
    key = await server.agent()
    async with server.peer(key) as p:
        await p.send({"type": "hello", "cursor": 0})
        await p.send(user_message("m1"))
        await p.until_idle()
    assert p.frames[0]["type"] == "welcome" and p.frames[0]["head"] in (0, 1, 2)
    acks = [f for f in p.frames if f["type"] == "ack"]
    assert acks == [{"type": "ack", "id": "m1", "seq": 1, "duplicate": False}]
    assert_gap_free(p.events)
    assert transcript(p.events) == transcript(await server.events(key))


async def test_deleting_an_agent_closes_its_attached_clients(slow_server: Server) -> None:
    """After DELETE, a client attached to the agent must not be left hanging on a dead stream."""
    server = slow_server
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send(user_message("m1"))
        await p.until(lambda f: f["type"] == "delta")
        status, _ = await server.request("DELETE", f"/v1/agents/{key}")
        assert status == 200
        told = False  # an `agent_not_found` error frame, or the server closing the socket
        try:
            while not told:
                frame = await p.recv(5)
                told = frame["type"] == "error" and frame["code"] == "agent_not_found"
        except p.Closed:
            told = True
        except TimeoutError:
            pass
        assert told, "the client of a deleted agent was neither told nor disconnected"


async def test_a_message_sent_during_a_turn_joins_it(slow_server: Server) -> None:
    server = slow_server
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send(user_message("m1"))
        await p.until(lambda f: f["type"] == "delta")
        await p.send(user_message("m2", "task: primes"))
        ack2 = await p.until(lambda f: f["type"] == "ack" and f["id"] == "m2")
        assert ack2["duplicate"] is False
        await p.until_idle(30)
        assert await p.quiet(0.2) == []
    ev = p.events
    assert_gap_free(ev)
    users = [e for e in ev if e["kind"] == "user_message"]
    assert [(u["data"]["id"], u["data"]["deferred"]) for u in users] == [("m1", False), ("m2", True)]
    assert users[1]["seq"] == ack2["seq"]
    statuses = [e["data"]["state"] for e in ev if e["kind"] == "status"]
    assert statuses == ["running", "idle"]  # one turn answered both
    last = [e for e in ev if e["kind"] == "assistant_message"][-1]
    assert last["seq"] > users[1]["seq"] and "primes.py" in last["data"]["text"]


async def test_a_full_mailbox_answers_busy_with_the_id_and_a_resend_works(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(actor=ActorConfig(mailbox_size=1, idle_timeout_s=60.0))
    key = await server.agent()
    actor = await server.host.wake(key)
    append = actor.log.append

    async def slow_append(events: Any) -> Any:
        await asyncio.sleep(0.3)  # the agent takes a while per commit: its mailbox fills up
        return await append(events)

    monkeypatch.setattr(actor.log, "append", slow_append)
    async with server.peer(key) as a, server.peer(key) as b, server.peer(key) as c:
        peers = (a, b, c)
        for p in peers:
            await p.hello(0)
        await asyncio.gather(*(p.send(user_message(f"m-{i}", "hello")) for i, p in enumerate(peers)))
        answers = [await p.until(lambda f: f["type"] in ("ack", "error")) for p in peers]
        busy = [i for i, f in enumerate(answers) if f["type"] == "error"]
        assert busy, answers  # at most one message handled + one waiting: the third is refused
        for i in busy:
            assert answers[i]["code"] == "busy" and answers[i]["id"] == f"m-{i}", answers[i]
        monkeypatch.setattr(actor.log, "append", append)
        await asyncio.sleep(0.5)  # back off, then resend with the same id
        for i in busy:
            await peers[i].send(user_message(f"m-{i}", "hello"))
            ack = await peers[i].until(lambda f: f["type"] in ("ack", "error"))
            assert ack["type"] == "ack" and ack["id"] == f"m-{i}" and ack["duplicate"] is False, ack
    log = await server.wait_idle(key)
    assert sorted(e["data"]["id"] for e in log if e["kind"] == "user_message") == ["m-0", "m-1", "m-2"]


# -- streaming text: attaching mid-message, interrupts -----------------------------------------


async def test_client_attaching_mid_message_first_gets_the_text_so_far(slow_server: Server) -> None:
    server = slow_server
    key = await server.agent()
    async with server.peer(key) as early:
        await early.hello(0)
        await early.send(user_message("m1"))
        first = await early.until(lambda f: f["type"] == "delta")
        await early.until(lambda f: f["type"] == "delta" and f["offset"] > 0)  # a little more text
        message_id = first["message_id"]
        async with server.peer(key) as late:
            await late.hello(0)
            late_first = await late.until(lambda f: f["type"] == "delta")
            assert late.events and late.events[-1]["kind"] == "status"  # catch-up came first
            assert late_first["message_id"] == message_id
            assert late_first["offset"] == 0
            so_far = early.text_of(message_id)
            assert late_first["text"].startswith(so_far) and len(late_first["text"]) >= len(so_far) > 0
            final = await late.until(lambda f: f["type"] == "event" and f["kind"] == "assistant_message")
            await early.until(lambda f: f["type"] == "event" and f["kind"] == "assistant_message")
            assert final["data"]["id"] == message_id
            assert len(late.deltas[message_id]) >= 2  # the text so far, then live chunks
            assert late.text_of(message_id) == final["data"]["text"]
            assert early.text_of(message_id) == final["data"]["text"]
            await server.host.interrupt(key)  # end the slow turn early
            await late.until_idle()


async def test_interrupt_stops_the_turn_and_keeps_the_history(slow_server: Server) -> None:
    server = slow_server
    key = await server.agent()
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send({"type": "interrupt"})  # nothing running: nothing happens
        await p.send(user_message("m1"))
        first = await p.until(lambda f: f["type"] == "delta")
        await p.until(lambda f: f["type"] == "delta" and f["offset"] > 0)
        await p.send({"type": "interrupt"})
        idle = await p.until_idle(5)
        assert idle["data"] == {"state": "idle", "reason": "interrupted"}
        assert kinds(p.events) == ["user_message", "status", "assistant_message", "status"]
        partial = p.events[2]["data"]
        assert partial["stop_reason"] == "interrupted"
        # The text so far is kept, and it is the text the client streamed: the same message.
        assert partial["text"] == p.text_of(first["message_id"]) != ""
        assert partial["id"] == first["message_id"], "the kept partial message must supersede its deltas"
        assert await p.quiet(0.3) == []  # the turn really stopped

        # The next message still works, on top of the kept history.
        await p.send(user_message("m2", "task: primes"))
        ack = await p.until(lambda f: f["type"] == "ack")
        assert ack["seq"] == idle["seq"] + 1 and ack["duplicate"] is False
        answer = await p.until(lambda f: f["type"] == "event" and f["kind"] == "assistant_message")
        assert answer["data"]["text"] and answer["data"]["stop_reason"] != "interrupted"
        texts = [m.text for m in server.state(key).messages if isinstance(m, UserMessage)]
        assert texts == [TASK, "task: primes"]
        await p.send({"type": "interrupt"})
        await p.until_idle(5)
    assert_gap_free(p.events)


# -- bad frames ----------------------------------------------------------------------------------


async def test_every_bad_frame_gets_a_typed_error_and_the_next_good_frame_still_works(server: Server) -> None:
    key = await server.agent()
    big = orjson.dumps(user_message("big", "x" * (frames.MAX_FRAME_BYTES + 10))).decode()

    async def refused(p: Peer, frame: Any, code: str, **expect: Any) -> dict[str, Any]:
        await p.send(frame)
        err = await p.until(lambda f: f["type"] == "error")
        assert err["code"] == code, (frame if len(str(frame)) < 200 else "(big)", err)
        for k, v in expect.items():
            assert err.get(k) == v, (k, err)
        return err

    async with server.peer(key, max_msg_size=0) as p:
        # Before hello.
        await refused(p, user_message("early"), "hello_required", id="early")
        await refused(p, {"type": "interrupt"}, "hello_required")
        await refused(p, {"type": "hello", "cursor": -1}, "bad_frame", field="cursor")
        await refused(p, {"type": "hello", "cursor": "0"}, "bad_frame", field="cursor")
        welcome = await p.hello(0)  # the connection is still usable
        assert welcome["head"] == 0
        assert server.state(key).seq == 0  # the refused message was not applied

        cases: list[tuple[Any, str, dict[str, Any]]] = [
            ("{not json", "bad_json", {}),
            ('{"type": "hello", "cursor": NaN}', "bad_json", {}),
            ("[1, 2]", "bad_frame", {}),
            ({"cursor": 0}, "bad_frame", {"field": "type"}),
            ({"type": "user_mesage", "id": "u", "text": "t"}, "unknown_type", {}),
            ({"type": "user_message", "id": "u1"}, "bad_frame", {"field": "text", "id": "u1"}),
            ({"type": "user_message", "id": "", "text": "t"}, "bad_frame", {"field": "id"}),
            (user_message("long", "x" * (frames.MAX_MESSAGE_CHARS + 1)), "bad_frame", {"field": "text", "id": "long"}),
            ({"type": "user_message", "id": 7, "text": "t"}, "bad_frame", {"field": "id"}),
            ({"type": "user_message", "id": "u2", "text": "t", "extra": 1}, "bad_frame", {"field": "extra"}),
            ({"type": "approval", "tool_call_id": "c1", "decision": "maybe"}, "bad_frame", {"field": "decision"}),
            ({"type": "hello", "cursor": 0}, "hello_repeated", {}),
            (big, "frame_too_large", {"max_bytes": frames.MAX_FRAME_BYTES}),
            (b"\xff\xfe not utf-8", "bad_json", {}),
        ]
        for i, (frame, code, expect) in enumerate(cases):
            # A good frame sent right behind a bad one (without waiting) is still processed.
            await p.send(frame)
            await p.send(user_message(f"good-{i}", "hello"))
            err = await p.until(lambda f: f["type"] in ("ack", "error"))
            assert err["type"] == "error" and err["code"] == code, (code, err)
            for k, v in expect.items():
                assert err.get(k) == v, (code, k, err)
            ack = await p.until(lambda f: f["type"] in ("ack", "error"))
            assert ack["type"] == "ack" and ack["id"] == f"good-{i}" and ack["duplicate"] is False, (code, ack)

        await refused(p, {"type": "approval", "tool_call_id": "call_nope", "decision": "allow"}, "unknown_tool_call")
        await p.send(user_message("last", TASK))
        assert (await p.until(lambda f: f["type"] == "ack"))["id"] == "last"
        await p.until(lambda f: is_idle(f) and f["seq"] > ack["seq"])
        welcome2 = await p.quiet(0.1)
        assert welcome2 == []  # and the connection is still fine: nothing unexpected arrived
    log = await server.events(key)
    ids = [e["data"]["id"] for e in log if e["kind"] == "user_message"]
    assert ids == [f"good-{i}" for i in range(len(cases))] + ["last"]
    assert server.host.metrics.frames_rejected == len(cases) + 4  # unknown_tool_call is not a bad frame


# -- backpressure --------------------------------------------------------------------------------


async def test_slow_client_is_dropped_with_1013_and_catches_up_by_cursor(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "SEND_QUEUE", 8)
    server = await start_server()
    key = await server.agent()
    # user_message events of ~240 KB, ~19 MB in all: more than loopback socket buffers take even
    # when the kernel autotunes them up, so the slow client's queue must fill.
    big = "x" * 240_000
    n = 80
    async with server.peer(key) as good, server.peer(key) as slow:
        await good.hello(0)
        await slow.send({"type": "hello", "cursor": 0})  # ...and then it does not read
        await asyncio.sleep(0.1)

        async def reader() -> None:
            while True:
                await good.recv()

        read_task = asyncio.create_task(reader())
        try:
            for i in range(n):
                status, body = await server.request(
                    "POST", f"/v1/agents/{key}/messages", json={"id": f"m{i}", "text": f"task {i} {big}"}
                )
                assert status == 200, body
            log = await server.wait_idle(key, 60)
            head = log[-1]["seq"]
            async with asyncio.timeout(30):
                while good.cursor < head:
                    await asyncio.sleep(0.02)
        finally:
            read_task.cancel()
            await asyncio.gather(read_task, return_exceptions=True)

        assert server.host.metrics.clients_dropped_slow == 1
        assert log[-1]["data"]["state"] == "idle"
        assert_gap_free(good.events)
        assert transcript(good.events) == transcript(log)

        # The slow client now reads: what was already on the wire, then the close with 1013.
        with pytest.raises(slow.Closed) as closed:
            while True:
                await slow.recv()
        assert closed.value.code == 1013
        got = slow.events
        assert got and got[-1]["seq"] < head
        assert_gap_free(got)
    async with server.peer(key) as again:
        await again.hello(got[-1]["seq"])
        while again.cursor < head:
            await again.recv()
        assert await again.quiet(0.2) == []
    assert transcript(got + again.events) == transcript(log)
    assert server.host.metrics.clients_dropped_slow == 1  # the well-behaved clients were never dropped
    status, text = await server.request("GET", "/metrics")
    assert "\nagent_runtime_clients_dropped_slow_total 1\n" in text
    async with asyncio.timeout(5):  # every connection, the dropped one included, is cleaned up
        while server.host.metrics.clients_connected or server.host.get(key).hub.subscribers:
            await asyncio.sleep(0.02)
