"""Bearer-token auth against a real server: refused upgrades and requests (401 `unauthenticated`,
403 `forbidden`), agent- and namespace-scoped tokens, the viewer role (watch only:
`permission_denied` frames on a connection that stays open), admin-only token creation, and the
explicit `auth=False` switch.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

if TYPE_CHECKING:
    from conftest import Server, ServerFactory

TASK = "task: write fib"


def is_idle(frame: dict[str, Any]) -> bool:
    return frame["type"] == "event" and frame["kind"] == "status" and frame["data"].get("state") == "idle"


async def upgrade(server: Server, key: str, token: str | None) -> tuple[int, Any]:
    """A real WebSocket upgrade request (RFC 6455 headers); returns the refusal (status, JSON)."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    status, body = await server.request("GET", f"/v1/agents/{key}/ws", token=token, headers=headers)
    # aiohttp's own client sees the same refusal as a failed handshake.
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await server.http.ws_connect(server.ws_url(key), headers=server.auth(token))
    assert exc.value.status == status
    return status, body


async def test_no_token_or_unknown_token_is_401_unauthenticated(server: Server) -> None:
    key = await server.agent()
    for token in ("", "art_not-a-real-token"):
        status, body = await upgrade(server, key, token)
        assert status == 401 and body["code"] == "unauthenticated" and body["type"] == "error", body
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/v1/agents", {}),
            ("GET", f"/v1/agents/{key}", {}),
            ("GET", f"/v1/agents/{key}/events", {}),
            ("POST", f"/v1/agents/{key}/messages", {"json": {"id": "m1", "text": "hi"}}),
            ("POST", f"/v1/agents/{key}/interrupt", {}),
            ("DELETE", f"/v1/agents/{key}", {}),
            ("POST", "/v1/agents", {"data": "apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata: {name: x}\n"}),
            ("POST", "/v1/tokens", {"json": {"role": "admin"}}),
        ]
        for method, path, kwargs in requests:
            status, body = await server.request(method, path, token=token, **kwargs)
            assert status == 401 and body["code"] == "unauthenticated", (method, path, body)
    # A malformed header is not a token either.
    status, body = await server.request("GET", "/v1/agents", headers={"Authorization": f"Basic {server.admin}"}, token="")
    assert status == 401 and body["code"] == "unauthenticated"
    # Nothing was applied by the refused requests.
    assert await server.events(key) == []
    assert set(server.host.handles) == {key}


async def test_agent_token_is_forbidden_on_another_agent(server: Server) -> None:
    a = await server.agent("a")
    b = await server.agent("b")
    token = server.token("operator", "default", "a")
    async with server.peer(a, token) as p:
        assert (await p.hello(0))["agent"] == a
    status, body = await upgrade(server, b, token)
    assert status == 403 and body["code"] == "forbidden"
    for method, path in [("GET", f"/v1/agents/{b}/events"), ("POST", f"/v1/agents/{b}/interrupt"),
                         ("DELETE", f"/v1/agents/{b}")]:
        status, body = await server.request(method, path, token=token)
        assert status == 403 and body["code"] == "forbidden", (method, path, body)
    status, body = await server.request("GET", "/v1/agents", token=token)
    assert [(x["namespace"], x["name"]) for x in body["agents"]] == [("default", "a")]
    assert b in server.host.handles


async def test_agent_token_cannot_create_other_agents(server: Server) -> None:
    """A token scoped to one agent must not create (or overwrite) other agents of its namespace."""
    await server.agent("a")
    token = server.token("operator", "default", "a")
    manifest = "apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata: {name: intruder}\n"
    status, body = await server.request("POST", "/v1/agents", token=token, data=manifest,
                                        headers={"Content-Type": "application/yaml"})
    assert status == 403 and body["code"] in ("forbidden", "permission_denied"), body
    assert "default/intruder" not in server.host.handles


async def test_namespace_token_covers_every_agent_of_its_namespace_only(server: Server) -> None:
    keys = [await server.agent("one", "team-a"), await server.agent("two", "team-a")]
    other = await server.agent("one", "team-b")
    token = server.token("operator", "team-a")
    for key in keys:
        async with server.peer(key, token) as p:
            assert (await p.hello(0))["agent"] == key
            await p.send({"type": "user_message", "id": f"m-{key}", "text": TASK})
            await p.until(is_idle)
        status, body = await server.request("GET", f"/v1/agents/{key}/events", token=token)
        assert status == 200 and body["head"] == p.events[-1]["seq"]
    status, body = await upgrade(server, other, token)
    assert status == 403 and body["code"] == "forbidden"
    status, body = await server.request("POST", f"/v1/agents/{other}/messages", token=token,
                                        json={"id": "x", "text": "hi"})
    assert status == 403 and body["code"] == "forbidden"
    status, body = await server.request("GET", "/v1/agents", token=token)
    assert sorted(x["name"] for x in body["agents"]) == ["one", "two"]
    assert {x["namespace"] for x in body["agents"]} == {"team-a"}
    assert await server.events(other) == []
    # Applying and deleting manifests is an admin's right: an operator may not, even in its namespace
    # (it could give its agent a shell); an admin scoped to the namespace may, there only (and
    # nothing of a request that reaches outside is applied).
    doc = "apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata: {{name: {}, namespace: {}}}\n"
    status, body = await server.request("POST", "/v1/agents", token=token, data=doc.format("three", "team-a"))
    assert status == 403 and body["code"] == "permission_denied", body
    status, body = await server.request("DELETE", f"/v1/agents/{keys[0]}", token=token)
    assert status == 403 and body["code"] == "permission_denied", body
    ns_admin = server.token("admin", "team-a")
    status, body = await server.request("POST", "/v1/agents", token=ns_admin, data=doc.format("three", "team-a"))
    assert status == 201, body
    status, body = await server.request("POST", "/v1/agents", token=ns_admin,
                                        data=doc.format("four", "team-a") + "---\n" + doc.format("four", "team-b"))
    assert status == 403 and body["code"] == "forbidden", body
    assert sorted(server.host.handles) == ["team-a/one", "team-a/three", "team-a/two", "team-b/one"]
    # A namespace admin creates tokens for its namespace only, and no wider role than its own.
    status, body = await server.request("POST", "/v1/tokens", token=ns_admin, json={"role": "viewer", "namespace": "team-b"})
    assert status == 403 and body["code"] == "forbidden", body
    status, body = await server.request("POST", "/v1/tokens", token=ns_admin, json={"role": "viewer"})
    assert status == 403 and body["code"] == "forbidden", body
    status, body = await server.request("POST", "/v1/tokens", token=ns_admin,
                                        json={"role": "operator", "namespace": "team-a", "agent": "one"})
    assert status == 201, body


async def test_viewer_watches_but_may_not_send(server: Server) -> None:
    key = await server.agent()
    viewer = server.token("viewer", "default", "a1")
    async with server.peer(key, viewer) as p:
        welcome = await p.hello(0)
        assert welcome["role"] == "viewer"
        refused = []
        for frame in ({"type": "user_message", "id": "v1", "text": TASK}, {"type": "interrupt"},
                      {"type": "approval", "tool_call_id": "c1", "decision": "allow"}):
            await p.send(frame)
            err = await p.recv()
            assert err["type"] == "error" and err["code"] == "permission_denied", (frame, err)
            refused.append(err)
        assert refused[0].get("id") == "v1"
        assert server.state(key).seq == 0  # nothing applied

        # The connection stays open and still receives the agent's events.
        status, body = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "op1", "text": TASK})
        assert status == 200
        await p.until(is_idle)
        assert [e["data"]["id"] for e in p.events if e["kind"] == "user_message"] == ["op1"]
        assert p.events == (await server.request("GET", f"/v1/agents/{key}/events", token=viewer))[1]["events"]

    for path, kwargs in [("messages", {"json": {"id": "v2", "text": "hi"}}), ("interrupt", {})]:
        status, body = await server.request("POST", f"/v1/agents/{key}/{path}", token=viewer, **kwargs)
        assert status == 403 and body["code"] == "permission_denied", (path, body)
    status, body = await server.request("DELETE", f"/v1/agents/{key}", token=viewer)
    assert status == 403 and body["code"] == "permission_denied"
    assert [e["data"]["id"] for e in await server.events(key) if e["kind"] == "user_message"] == ["op1"]


async def test_only_admin_creates_tokens(server: Server) -> None:
    key = await server.agent()
    body_in = {"role": "viewer", "namespace": "default", "agent": "a1"}
    for role, scope in [("operator", ("default", None)), ("viewer", ("default", "a1")), ("operator", ("default", "a1"))]:
        status, body = await server.request("POST", "/v1/tokens", token=server.token(role, *scope), json=body_in)
        assert status == 403 and body["code"] == "permission_denied", (role, body)
    status, body = await server.request("POST", "/v1/tokens", json=body_in)  # admin
    assert status == 201 and body["role"] == "viewer" and body["agent"] == "a1", body
    new = body["token"]
    async with server.peer(key, new) as p:
        assert (await p.hello(0))["role"] == "viewer"
    status, body = await server.request("POST", f"/v1/agents/{key}/messages", token=new, json={"id": "x", "text": "y"})
    assert status == 403 and body["code"] == "permission_denied"
    # Only digests are stored: the plaintext is not on disk.
    assert new not in server.running.admin_token_file.parent.joinpath("tokens.json").read_text()
    for bad in ({"role": "superuser"}, {"namespace": "x"}, {"role": "viewer", "agent": "a1"}):
        status, body = await server.request("POST", "/v1/tokens", json=bad)
        assert status == 400 and body["code"] == "bad_request", (bad, body)


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "-dash", "new\nline", "ünïcode", "a/b", 7, ["a"]])
async def test_bad_token_names_are_422_invalid_token_name(server: Server, name: object) -> None:
    tokens_json = server.running.admin_token_file.parent / "tokens.json"
    before = tokens_json.read_text()
    status, body = await server.request("POST", "/v1/tokens", json={"role": "viewer", "namespace": "default", "name": name})
    assert status == 422 and body["code"] == "invalid_token_name" and body["field"] == "name", body
    assert "1-64" in body["message"], body
    assert tokens_json.read_text() == before  # nothing created


async def test_a_named_token_is_created_and_says_its_name(server: Server) -> None:
    status, body = await server.request("POST", "/v1/tokens", json={"role": "viewer", "namespace": "default", "name": "ci-bot.2"})
    assert status == 201 and body["name"] == "ci-bot.2", body
    assert server.running.tokens.authenticate(f"Bearer {body['token']}").name == "ci-bot.2"


async def test_agentctl_token_name_is_checked(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    from agent_runtime.cli.main import main

    base = ["--server", server.url, "--token", server.admin, "token", "--role", "viewer", "--namespace", "default"]
    with pytest.raises(SystemExit) as exit_:
        await asyncio.to_thread(main, [*base, "--name", "bad name"])
    assert exit_.value.code == 2
    assert "1-64" in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*base, "--name", "ci-bot"]) == 0
    token = capsys.readouterr().out.strip()
    assert server.running.tokens.authenticate(f"Bearer {token}").name == "ci-bot"


async def test_refusals_have_distinct_codes(server: Server) -> None:
    a = await server.agent("a")
    b = await server.agent("b")
    no_token = (await upgrade(server, a, ""))[1]["code"]
    wrong_agent = (await upgrade(server, b, server.token("operator", "default", "a")))[1]["code"]
    async with server.peer(a, server.token("viewer", "default", "a")) as p:
        await p.hello(0)
        await p.send({"type": "user_message", "id": "v", "text": "hi"})
        viewer_sends = (await p.recv())["code"]
    assert (no_token, wrong_agent, viewer_sends) == ("unauthenticated", "forbidden", "permission_denied")
    assert len({no_token, wrong_agent, viewer_sends}) == 3


async def test_auth_off_explicitly_lets_requests_without_a_token_through(start_server: ServerFactory) -> None:
    server = await start_server(auth=False)
    assert server.admin is None
    key = await server.agent()
    status, body = await server.request("GET", "/v1/agents", token="")
    assert status == 200 and [x["name"] for x in body["agents"]] == ["a1"]
    async with server.peer(key, "") as p:
        assert (await p.hello(0))["role"] == "operator"
        await p.send({"type": "user_message", "id": "m1", "text": TASK})
        await p.until(is_idle)
    status, body = await server.request("POST", f"/v1/agents/{key}/messages", token="", json={"id": "m2", "text": "hi"})
    assert status == 200 and body["seq"] == p.events[-1]["seq"] + 1
    await server.wait_idle(key)


async def test_auth_is_on_by_default(start_server: ServerFactory) -> None:
    server = await start_server()  # no auth argument: the default must be on
    assert server.admin and server.running.admin_token_file.read_text().strip() == server.admin
    assert oct(server.running.admin_token_file.stat().st_mode & 0o777) == "0o600"
    status, body = await server.request("GET", "/v1/agents", token="")
    assert status == 401 and body["code"] == "unauthenticated"
