"""Shared fixtures for the server tests: a real standalone server on loopback (port 0) with its
SQLite logs in `tmp_path`, real aiohttp clients (HTTP and WebSocket), and a small `Peer` that
records what one WebSocket client received (frames, events, deltas) so tests compare transcripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from agent_runtime.agent.actor import ActorConfig
from agent_runtime.manifest import make_manifest
from agent_runtime.providers.simulated import SimulatedModelConfig
from agent_runtime.standalone import Running, ServerConfig, serve
from agent_runtime.agent.state import AgentState

sys.path.insert(0, str(Path(__file__).parent))
from helpers.texts import TASK  # noqa: E402

RECV_TIMEOUT = 15.0
# A model slow enough to attach or interrupt mid-message: 1 token (4 chars) per 50 ms chunk.
SLOW_MODEL = SimulatedModelConfig(tokens_per_s=20, ttft_s=0.1)
# A message text that makes the simulated model do a real coding task (tool subprocesses).


class Closed(Exception):
    """The WebSocket closed (or errored) while a test waited for a frame."""

    def __init__(self, msg: aiohttp.WSMessage, code: int | None) -> None:
        super().__init__(f"websocket closed: {msg.type!r} code={code} data={msg.data!r}")
        self.msg = msg
        self.code = code


class Peer:
    """One WebSocket client: receives frames and keeps a record of them."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.deltas: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.hello_cursor = 0

    Closed = Closed

    @property
    def cursor(self) -> int:
        """The seq of the last event received (the hello cursor before any)."""
        return self.events[-1]["seq"] if self.events else self.hello_cursor

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            await self.ws.send_str(orjson.dumps(frame).decode())
        elif isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def hello(self, cursor: int = 0) -> dict[str, Any]:
        self.hello_cursor = cursor
        await self.send({"type": "hello", "cursor": cursor})
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def recv(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise Closed(msg, self.ws.close_code)
        frame: dict[str, Any] = orjson.loads(msg.data)
        self.frames.append(frame)
        if frame["type"] == "event":
            self.events.append(frame)
        elif frame["type"] == "delta":
            self.deltas[frame["message_id"]].append(frame)
        return frame

    async def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """Receive until a frame matches `pred`; return it."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if pred(frame):
                    return frame

    async def until_idle(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """Receive until the next `status idle` event."""
        return await self.until(is_idle, timeout)

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Frames received within `seconds` (the test usually expects none)."""
        got: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(await self.recv(seconds))
        return got

    def text_of(self, message_id: str) -> str:
        """The concatenation of this client's deltas for one message (checking offsets as it goes)."""
        buf = ""
        for d in self.deltas[message_id]:
            assert d["offset"] == len(buf), (d, len(buf))
            buf += d["text"]
        return buf


def is_idle(frame: dict[str, Any]) -> bool:
    return frame["type"] == "event" and frame["kind"] == "status" and frame["data"].get("state") == "idle"


def transcript(events: list[dict[str, Any]]) -> list[tuple[int, str, Any]]:
    return [(e["seq"], e["kind"], e["data"]) for e in events]


class Server:
    """A running standalone server plus helpers bound to it."""

    def __init__(self, running: Running, http: aiohttp.ClientSession, stack: contextlib.AsyncExitStack) -> None:
        self.running = running
        self.host = running.host
        self.url = running.url
        self.http = http
        self.admin = running.admin_token
        self._stack = stack

    async def stop(self) -> None:
        """Stop the server (as at the end of the test, but now)."""
        await self._stack.aclose()

    def auth(self, token: str | None = None) -> dict[str, str]:
        token = token if token is not None else self.admin
        return {"Authorization": f"Bearer {token}"} if token else {}

    def ws_url(self, key: str) -> str:
        return self.url.replace("http://", "ws://") + f"/v1/agents/{key}/ws"

    async def agent(self, name: str = "a1", namespace: str = "default", **spec: Any) -> str:
        """Create an agent (directly on the host) and return its key."""
        spec.setdefault("limits", {"tokenBudget": 10_000_000})
        manifest = make_manifest(name, namespace, **spec)
        await self.host.apply(manifest)
        return manifest.key

    @contextlib.asynccontextmanager
    async def peer(self, key: str, token: str | None = None, **kwargs: Any) -> AsyncIterator[Peer]:
        ws = await self.http.ws_connect(self.ws_url(key), headers=self.auth(token), **kwargs)
        try:
            yield Peer(ws)
        finally:
            await ws.close()

    async def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.auth(token), **kwargs.pop("headers", {})}
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, orjson.loads(body)
            return resp.status, body.decode()

    def state(self, key: str) -> AgentState:
        """The derived state of an awake agent."""
        actor = self.host.get(key).actor
        assert actor is not None, f"{key} is not awake"
        return actor.state

    async def events(self, key: str, after: int = 0) -> list[dict[str, Any]]:
        """Every committed event of `key` after `after`, from the log (via the host)."""
        return [e.to_frame() for e in await self.host.read_events(key, after)]

    async def wait_idle(self, key: str, timeout: float = RECV_TIMEOUT, or_asleep: bool = False) -> list[dict[str, Any]]:
        """Wait until the agent is not running (and has run); return its whole log. `or_asleep`: an
        agent that already fell asleep again after running counts too (a short idle timeout can put
        it to sleep between two polls; only for a caller whose message was acknowledged, so the
        agent cannot be asleep before it ran)."""
        async with asyncio.timeout(timeout):
            while True:
                handle = self.host.get(key)
                actor = handle.actor
                if actor is not None and not actor.state.running and actor.state.seq > 0 and actor.mailbox.empty():
                    return await self.events(key)
                if or_asleep and actor is None and handle.summary.get("seq", 0) > 0:
                    return await self.events(key)
                await asyncio.sleep(0.02)

    def token(self, role: str, namespace: str | None = None, agent: str | None = None) -> str:
        from agent_runtime.auth import Grant, Role

        return self.running.tokens.create(Grant(Role(role), namespace, agent))


ServerFactory = Callable[..., Awaitable[Server]]


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def start_server(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[ServerFactory]:
    """`await start_server(model=..., auth=..., data_dir=..., actor=...)` starts a server on port 0;
    it stops at teardown (or at `await server.stop()`)."""
    stacks: list[contextlib.AsyncExitStack] = []

    async def start(
        model: SimulatedModelConfig | None = None, auth: bool = True, data_dir: Path | None = None, **kwargs: Any
    ) -> Server:
        config = ServerConfig(
            data_dir=data_dir or tmp_path / f"data{len(stacks)}",
            port=0,
            auth=auth,
            model=model or SimulatedModelConfig(),
            actor=kwargs.pop("actor", ActorConfig(idle_timeout_s=60.0)),
            **kwargs,
        )
        stack = contextlib.AsyncExitStack()
        stacks.append(stack)
        running = await stack.enter_async_context(serve(config))
        return Server(running, http, stack)

    try:
        yield start
    finally:
        for stack in reversed(stacks):
            await stack.aclose()
        gc.collect()  # surface unclosed sockets/processes in the test that leaked them


@pytest_asyncio.fixture
async def server(start_server: ServerFactory) -> Server:
    """A server with auth on and the instant simulated model."""
    return await start_server()


@pytest_asyncio.fixture
async def slow_server(start_server: ServerFactory) -> Server:
    """A server whose model streams slowly enough to attach or interrupt mid-message."""
    return await start_server(model=SLOW_MODEL)


@pytest.fixture
def task_text() -> str:
    return TASK
