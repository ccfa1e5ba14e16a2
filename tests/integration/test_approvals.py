"""Human approval against a real server: an `ask` rule makes the agent commit
`approval_required` and wait; an operator's `approval` frame (or the HTTP route) decides; a
viewer is refused with `permission_denied`; a second answer, or one for a call nobody asked
about, gets `unknown_tool_call`; other agents keep working meanwhile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Server

TASK = "task: write fib"
ASK_WRITES = {"autonomy": {"rules": [{"action": "ask", "tool": "write_file"}], "approvalTimeoutS": 60}}


def is_required(frame: dict[str, Any]) -> bool:
    return frame["type"] == "event" and frame["kind"] == "approval_required"


def is_idle(frame: dict[str, Any]) -> bool:
    return frame["type"] == "event" and frame["kind"] == "status" and frame["data"].get("state") == "idle"


async def test_operator_approves_over_the_websocket_viewer_is_refused(server: Server) -> None:
    key = await server.agent("gated", **ASK_WRITES)
    other = await server.agent("free")
    viewer = server.token("viewer", "default")
    async with server.peer(key) as op, server.peer(key, viewer) as watcher:
        await op.hello(0)
        await watcher.hello(0)
        await op.send({"type": "user_message", "id": "m1", "text": TASK})
        required = await op.until(is_required)
        call_id = required["data"]["tool_call_id"]
        assert required["data"]["name"] == "write_file" and required["data"]["default_decision"] == "deny"
        assert required["data"]["timeout_s"] == 60 and required["data"]["reason"].startswith("ask by rule 0")
        assert server.state(key).running  # waiting, not finished

        # other agents are not blocked by the wait
        async with server.peer(other) as p2:
            await p2.hello(0)
            await p2.send({"type": "user_message", "id": "o1", "text": TASK})
            await p2.until_idle()

        await watcher.until(is_required)
        await watcher.send({"type": "approval", "tool_call_id": call_id, "decision": "allow"})
        refused = await watcher.until(lambda f: f["type"] == "error")
        assert refused["code"] == "permission_denied"
        assert server.state(key).approvals == {call_id: None}

        await op.send({"type": "approval", "tool_call_id": call_id, "decision": "allow"})
        decided = await op.until(lambda f: f["type"] == "event" and f["kind"] == "approval")
        assert decided["data"] == {"tool_call_id": call_id, "decision": "allow", "by": "operator"}
        await op.send({"type": "approval", "tool_call_id": call_id, "decision": "deny"})
        late = await op.until(lambda f: f["type"] == "error")
        assert late["code"] == "unknown_tool_call"
        await op.until(is_idle)
    log = await server.events(key)
    result = next(e for e in log if e["kind"] == "tool_result" and e["data"]["tool_call_id"] == call_id)
    assert not result["data"]["is_error"] and result["data"]["content"].startswith("wrote ")
    assert (server.host.folder_of("default", "gated") / "workspace").exists()


async def test_denied_over_http_the_model_sees_the_refusal_and_the_turn_goes_on(server: Server) -> None:
    key = await server.agent("gated", **ASK_WRITES)
    viewer = server.token("viewer", "default")
    async with server.peer(key) as op:
        await op.hello(0)
        await op.send({"type": "user_message", "id": "m1", "text": TASK})
        call_id = (await op.until(is_required))["data"]["tool_call_id"]
        path = f"/v1/agents/{key}/approvals"
        status, body = await server.request("POST", path, viewer, json={"tool_call_id": call_id, "decision": "deny"})
        assert status == 403, body
        status, body = await server.request("POST", path, json={"tool_call_id": call_id, "decision": "perhaps"})
        assert status == 400 and body["code"] == "bad_frame" and body["field"] == "decision"
        status, body = await server.request("POST", path, json={"tool_call_id": "nobody", "decision": "deny"})
        assert status == 409 and body["code"] == "unknown_tool_call"
        status, body = await server.request("POST", path, json={"tool_call_id": call_id, "decision": "deny"})
        assert (status, body) == (200, {"tool_call_id": call_id, "decision": "deny", "accepted": True})
        await op.until(is_idle)
    log = await server.events(key)
    result = next(e for e in log if e["kind"] == "tool_result" and e["data"]["tool_call_id"] == call_id)
    assert result["data"]["is_error"] and "an operator denied it" in result["data"]["content"]
    assert log[-1]["data"] == {"state": "idle", "reason": "end_turn"}  # the model answered after the refusal
