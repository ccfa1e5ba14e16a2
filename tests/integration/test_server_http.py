"""The HTTP API against a real server: health, Prometheus metrics that move with real turns,
agents (list, YAML/JSON apply with 201/200, 422 naming the bad field, delete), event ranges,
idempotent messages, and 404 `agent_not_found`.
"""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest

from agent_runtime.providers.simulated import SimulatedModelConfig
from agent_runtime.tools.landlock import abi_version
from agent_runtime.tools.sandbox import landlock_available

if TYPE_CHECKING:
    from conftest import Server

TASK = "task: write fib"
API = "apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\n"


def yaml_doc(name: str, namespace: str = "default", spec: str = "") -> str:
    return API + f"metadata:\n  name: {name}\n  namespace: {namespace}\n" + (f"spec:\n{spec}" if spec else "")


async def apply(server: Server, text: str, content_type: str = "application/yaml") -> tuple[int, Any]:
    return await server.request("POST", "/v1/agents", data=text.encode(), headers={"Content-Type": content_type})


# -- health and metrics ----------------------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
HELP_RE = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
SAMPLE_RE = re.compile(rf'^({NAME})(?:\{{((?:{NAME}="(?:[^"\\\n]|\\.)*"(?:,|(?=\}})))*)\}})? (\S+)$')


def parse_prometheus(text: str) -> dict[str, dict[str, float]]:
    """Strictly parse the text exposition format: {metric: {labels: value}}."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[str, dict[str, float]] = {}
    order: list[str] = []
    for line in text.rstrip("\n").split("\n"):
        if m := HELP_RE.match(line):
            assert m[1] not in helps, f"second HELP for {m[1]}"
            helps.add(m[1])
        elif m := TYPE_RE.match(line):
            assert m[1] not in types, f"second TYPE for {m[1]}"
            assert m[1] not in samples, f"TYPE after samples of {m[1]}"
            types[m[1]] = m[2]
        elif m := SAMPLE_RE.match(line):
            name, labels, raw = m[1], m[2] or "", m[3]
            assert name in types, f"sample {name} has no TYPE"
            value = float(raw)  # Prometheus floats: also NaN, +Inf
            assert not math.isnan(value), line
            assert labels not in samples.get(name, {}), f"duplicate sample {line}"
            if not order or order[-1] != name:
                assert name not in order, f"samples of {name} are not grouped"
                order.append(name)
            samples.setdefault(name, {})[labels] = value
        else:
            raise AssertionError(f"not Prometheus text: {line!r}")
    for name, kind in types.items():
        if kind == "counter":
            assert all(v >= 0 for v in samples.get(name, {}).values()), name
    return samples


async def test_healthz(server: Server) -> None:
    await server.agent("a")
    status, body = await server.request("GET", "/healthz", token="")
    assert status == 200 and body == {"status": "ok", "agents": 1}


async def test_metrics_are_prometheus_text_and_counters_move_after_a_turn(server: Server) -> None:
    key = await server.agent()
    async with server.http.get(server.url + "/metrics", headers=server.auth()) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        before = parse_prometheus(await resp.text())
    for name in ("agent_runtime_events_appended_total", "agent_runtime_turns_completed_total",
                 "agent_runtime_tool_runs_total", "agent_runtime_user_messages_total",
                 "agent_runtime_clients_connected", "agent_runtime_clients_dropped_slow_total",
                 "agent_runtime_frames_rejected_total", "process_resident_memory_bytes"):
        assert name in before, name
    assert before["agent_runtime_turns_completed_total"][""] == 0
    assert before["process_resident_memory_bytes"][""] > 0
    # 0: shell calls run unconfined on this machine; else the kernel's Landlock ABI.
    abi = abi_version() if landlock_available() else 0
    assert before["agent_runtime_tool_confinement_abi"][""] == abi

    status, _ = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "m1", "text": TASK})
    assert status == 200
    log = await server.wait_idle(key)
    async with server.peer(key) as p:
        await p.hello(log[-1]["seq"])
        await p.send("not json")
        await p.until(lambda f: f["type"] == "error")
        status, text = await server.request("GET", "/metrics")
        during = parse_prometheus(text)
    assert during["agent_runtime_clients_connected"][""] == 1
    after = parse_prometheus((await server.request("GET", "/metrics"))[1])

    def delta(name: str, labels: str = "") -> float:
        return after[name][labels] - before[name].get(labels, 0)

    assert delta("agent_runtime_events_appended_total") == len(log)
    assert delta("agent_runtime_turns_completed_total") == 1
    assert delta("agent_runtime_user_messages_total") == 1
    assert delta("agent_runtime_tool_runs_total") == sum(1 for e in log if e["kind"] == "tool_result") > 0
    assert delta("agent_runtime_frames_rejected_total") == 1
    assert after["agent_runtime_clients_connected"][""] == 0
    assert after["agent_runtime_agents"]['phase="idle"'] == 1


# -- agents ----------------------------------------------------------------------------------------


async def test_list_agents(server: Server) -> None:
    await server.agent("zeta", "team-b")
    await server.agent("alpha", "team-a")
    await server.agent("beta", "team-a")
    status, body = await server.request("GET", "/v1/agents")
    assert status == 200
    assert [(a["namespace"], a["name"]) for a in body["agents"]] == [
        ("team-a", "alpha"), ("team-a", "beta"), ("team-b", "zeta")]
    assert all(a["phase"] == "hibernated" and a["model"] == "sim-coder-1" for a in body["agents"])


async def test_apply_multi_doc_yaml_creates_201_and_reapply_is_200(server: Server) -> None:
    text = yaml_doc("one") + "---\n" + yaml_doc("two", "team-a", "  limits:\n    maxTurns: 3\n")
    status, body = await apply(server, text)
    assert status == 201, body
    assert body["applied"] == [{"agent": "default/one", "created": True}, {"agent": "team-a/two", "created": True}]
    status, body = await apply(server, text)
    assert status == 200, body
    assert [a["created"] for a in body["applied"]] == [False, False]

    status, body = await server.request("GET", "/v1/agents/team-a/two")
    assert status == 200 and body["manifest"]["spec"]["limits"]["maxTurns"] == 3
    assert (server.running.admin_token_file.parent / "agents/team-a/two/manifest.yaml").exists()

    # Re-apply with a change updates the agent in place (200), and the agent works.
    status, body = await apply(server, yaml_doc("two", "team-a", "  limits:\n    maxTurns: 5\n"))
    assert status == 200 and body["applied"] == [{"agent": "team-a/two", "created": False}]
    status, body = await server.request("GET", "/v1/agents/team-a/two")
    assert body["manifest"]["spec"]["limits"]["maxTurns"] == 5
    status, body = await server.request("POST", "/v1/agents/team-a/two/messages", json={"id": "m", "text": TASK})
    assert status == 200 and body["seq"] == 1
    log = await server.wait_idle("team-a/two")
    assert log[-1]["data"]["state"] == "idle"

    # JSON works too (a list of documents or one).
    doc = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "three"}}
    status, body = await apply(server, orjson.dumps([doc]).decode(), "application/json")
    assert status == 201 and body["applied"] == [{"agent": "default/three", "created": True}]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (yaml_doc("bad", spec="  limits:\n    maxTurns: 0\n"), "spec.limits.maxTurns"),
        (yaml_doc("Bad_Name"), "metadata.name"),
        (yaml_doc("ok", spec="  tools: [shell, teleport]\n"), "spec.tools"),
        (yaml_doc("ok", spec="  limitz: {}\n"), "spec.limitz"),
        (API.replace("Agent", "Pod") + "metadata: {name: ok}\n", "kind"),
        ("kind: Agent\nmetadata: {name: ok}\n", "apiVersion"),
    ],
)
async def test_invalid_manifest_is_422_naming_the_field(server: Server, text: str, field: str) -> None:
    status, body = await apply(server, yaml_doc("fine") + "---\n" + text)
    assert status == 422, body
    assert body["code"] == "invalid_manifest" and body["field"] == field, body
    assert field in body["message"]
    assert server.host.handles == {}  # all or nothing: the valid document was not applied either


async def test_unparseable_bodies_are_refused(server: Server) -> None:
    for text, ctype, status_code, code in [
        ("metadata: [unclosed", "application/yaml", 422, "invalid_manifest"),
        ("", "application/yaml", 422, "invalid_manifest"),
        ("- 1\n- 2\n", "application/yaml", 422, "invalid_manifest"),
        ("{nope", "application/json", 400, "bad_json"),
    ]:
        status, body = await apply(server, text, ctype)
        assert (status, body["code"]) == (status_code, code), (text, body)
    assert server.host.handles == {}


@pytest.mark.parametrize("ctype", ["application/yaml", "application/json"])
@pytest.mark.parametrize("depth", [100, 5000])
async def test_deeply_nested_manifest_is_422_not_500(server: Server, ctype: str, depth: int) -> None:
    """A document nested deeper than the bound (docs/protocol.md) is refused as invalid_manifest
    (not `internal` with a RecursionError), and the server goes on serving."""
    if ctype == "application/json":
        text = '{"metadata": {"name": "a"}, "spec": ' + "[" * depth + "]" * depth + "}"
    else:
        text = yaml_doc("fine") + "---\n" + "metadata: {name: a}\nspec: " + "[" * depth + "]" * depth + "\n"
    status, body = await apply(server, text, ctype)
    assert (status, body["code"]) == (422, "invalid_manifest"), body
    assert "nested deeper than" in body["message"], body
    assert server.host.handles == {}
    status, body = await apply(server, yaml_doc("after"))
    assert status == 201, body


async def test_agentctl_apply_of_a_deeply_nested_file_says_why(server: Server, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from agent_runtime.cli.main import main

    path = tmp_path / "deep.yaml"
    path.write_text("apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: "
                    + "[" * 5000 + "]" * 5000 + "\n")
    code = await asyncio.to_thread(main, ["--server", server.url, "--token", server.admin, "apply", "-f", str(path)])
    err = capsys.readouterr().err
    assert code == 1 and "invalid_manifest" in err and "nested deeper than" in err, err
    assert server.host.handles == {}


async def test_delete_removes_the_agent(server: Server) -> None:
    key = await server.agent("doomed")
    await server.agent("keeper")
    status, _ = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "m1", "text": TASK})
    assert status == 200
    await server.wait_idle(key)
    folder = server.running.admin_token_file.parent / "agents/default/doomed"
    assert (folder / "events.db").exists() and (folder / "workspace/fib.py").exists()

    status, body = await server.request("DELETE", f"/v1/agents/{key}")
    assert status == 200 and body == {"deleted": key}
    assert not folder.exists()
    for method, path in [("GET", f"/v1/agents/{key}"), ("GET", f"/v1/agents/{key}/events"),
                         ("DELETE", f"/v1/agents/{key}")]:
        status, body = await server.request(method, path)
        assert status == 404 and body["code"] == "agent_not_found", (method, path, body)
    status, body = await server.request("GET", "/v1/agents")
    assert [a["name"] for a in body["agents"]] == ["keeper"]


async def test_unknown_agent_is_404_agent_not_found(server: Server) -> None:
    key = "default/ghost"
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/v1/agents/{key}", {}),
        ("GET", f"/v1/agents/{key}/events", {}),
        ("POST", f"/v1/agents/{key}/messages", {"json": {"id": "m1", "text": "hi"}}),
        ("POST", f"/v1/agents/{key}/interrupt", {}),
        ("DELETE", f"/v1/agents/{key}", {}),
        ("GET", f"/v1/agents/{key}/ws", {}),
    ]
    for method, path, kwargs in requests:
        status, body = await server.request(method, path, **kwargs)
        assert status == 404 and body["code"] == "agent_not_found" and body["type"] == "error", (method, path, body)
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await server.http.ws_connect(server.ws_url(key), headers=server.auth())
    assert exc.value.status == 404
    assert server.host.handles == {}


# -- events and messages -----------------------------------------------------------------------------


async def test_events_by_range(server: Server) -> None:
    key = await server.agent()
    await server.host.user_message(key, "m1", TASK)
    log = await server.wait_idle(key)
    head = log[-1]["seq"]
    assert head > 8

    async def get(**params: Any) -> tuple[int, Any]:
        return await server.request("GET", f"/v1/agents/{key}/events", params={k: str(v) for k, v in params.items()})

    status, body = await get()
    assert status == 200 and body["head"] == head and body["events"] == log
    status, body = await get(after=0, limit=5)
    assert [e["seq"] for e in body["events"]] == [1, 2, 3, 4, 5] and body["head"] == head
    status, body = await get(after=5, limit=3)
    assert body["events"] == log[5:8]
    status, body = await get(after=head - 1)
    assert [e["seq"] for e in body["events"]] == [head]
    status, body = await get(after=head)
    assert status == 200 and body["events"] == []
    # Paging with `after` = the last seq seen reassembles the log exactly.
    paged: list[dict[str, Any]] = []
    while True:
        status, body = await get(after=paged[-1]["seq"] if paged else 0, limit=4)
        if not body["events"]:
            break
        paged += body["events"]
    assert paged == log
    for params in ({"after": "abc"}, {"after": "-1"}, {"limit": "0"}, {"limit": "x"}, {"after": "1.5"}):
        status, body = await get(**params)
        assert status == 400 and body["code"] == "bad_request", (params, body)


async def test_post_message_is_idempotent_by_id(server: Server) -> None:
    key = await server.agent()
    path = f"/v1/agents/{key}/messages"
    status, first = await server.request("POST", path, json={"id": "m1", "text": TASK})
    assert status == 200 and first == {"id": "m1", "seq": 1, "duplicate": False}
    log = await server.wait_idle(key)
    status, again = await server.request("POST", path, json={"id": "m1", "text": "other text"})
    assert status == 200 and again == {"id": "m1", "seq": 1, "duplicate": True}
    assert await server.events(key) == log  # applied once: no new event, no new turn
    status, second = await server.request("POST", path, json={"id": "m2", "text": "task: primes"})
    assert status == 200 and second == {"id": "m2", "seq": len(log) + 1, "duplicate": False}
    log = await server.wait_idle(key)
    assert [e["data"]["id"] for e in log if e["kind"] == "user_message"] == ["m1", "m2"]

    for raw, code in [(b"{bad", "bad_json"), (b'{"id": "", "text": "x"}', "bad_frame"),
                      (b'{"id": "x"}', "bad_frame"), (b'["id", "text"]', "bad_frame"),
                      (orjson.dumps({"id": "y" * 129, "text": "x"}), "bad_frame")]:
        status, body = await server.request("POST", path, data=raw, headers={"Content-Type": "application/json"})
        assert status == 400 and body["code"] == code, (raw, body)
    assert await server.events(key) == log


async def test_interrupt_over_http(start_server: Any) -> None:
    server = await start_server(model=SimulatedModelConfig(tokens_per_s=20, ttft_s=0.1))
    key = await server.agent()
    status, body = await server.request("POST", f"/v1/agents/{key}/interrupt")
    assert status == 200 and body == {"interrupted": False}  # nothing to stop
    assert await server.events(key) == []

    async with server.peer(key) as p:
        await p.hello(0)
        status, _ = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "m1", "text": TASK})
        assert status == 200
        await p.until(lambda f: f["type"] == "delta")
        status, body = await server.request("POST", f"/v1/agents/{key}/interrupt")
        assert status == 200 and body == {"interrupted": True}
        idle = await p.until(lambda f: f["type"] == "event" and f["kind"] == "status" and f["data"]["state"] == "idle")
        assert idle["data"]["reason"] == "interrupted"
    status, body = await server.request("GET", f"/v1/agents/{key}")
    assert status == 200 and body["phase"] == "idle" and body["seq"] == idle["seq"] and body["turns"] == 1
    assert body["manifest"]["metadata"] == {"name": "a1", "namespace": "default", "labels": {}}
