"""A small async client of the runtime's HTTP and WebSocket API, used by `agentctl`.

It finds the server (`--server`, `$AGENTCTL_SERVER`, default http://127.0.0.1:8470) and a token
(`--token`, `$AGENTCTL_TOKEN`, else the admin token file of the default data dir).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agent_runtime import errors, layout
from agent_runtime.protocol.frames import HTTP_STATUS

DEFAULT_SERVER = "http://127.0.0.1:8470"


def default_data_dir() -> Path:
    env = os.environ.get("AGENT_RUNTIME_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agent-runtime"


def find_token(explicit: str | None, data_dir: Path | None = None) -> str | None:
    if explicit:
        return explicit
    env = os.environ.get("AGENTCTL_TOKEN")
    if env:
        return env
    token_file = layout.admin_token_file(data_dir or default_data_dir())
    if token_file.exists():
        return token_file.read_text(encoding="utf-8").strip()
    return None


class ApiError(errors.Error, code="http_error"):
    """The server refused a request: `code` is its error code, `status` its HTTP status (the
    retryability and blame of a known code come from `errors.CODES`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})", code=code)
        self.status = status
        self.http_status = status


class Client:
    def __init__(self, server: str, token: str | None) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        # No pool limit: a WebSocket holds its connection for as long as it is attached.
        self._session = aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with Client(...)`"
        return self._session

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.server + path, **kwargs) as resp:
            body = await resp.read()
            data = orjson.loads(body) if body and resp.content_type == "application/json" else body.decode()
            if resp.status >= 400:
                code, message = errors.read_body(data) or ("http_error", str(data)[:200])
                raise ApiError(resp.status, code, message)
            return data

    async def apply(self, manifest_text: str) -> Any:
        return await self.request("POST", "/v1/agents", data=manifest_text, headers={"Content-Type": "application/yaml"})

    async def agents(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/v1/agents"))["agents"])

    async def send(self, key: str, client_id: str, text: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/v1/agents/{key}/messages", json={"id": client_id, "text": text}))

    async def events(self, key: str, after: int = 0, limit: int = 1000) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/agents/{key}/events", params={"after": after, "limit": limit}))

    async def interrupt(self, key: str) -> Any:
        return await self.request("POST", f"/v1/agents/{key}/interrupt")

    async def create_token(self, role: str, namespace: str | None, agent: str | None) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/tokens", json={"role": role, "namespace": namespace, "agent": agent}))

    def ws_url(self, key: str) -> str:
        return self.server.replace("http://", "ws://").replace("https://", "wss://") + f"/v1/agents/{key}/ws"

    async def connect(self, key: str) -> aiohttp.ClientWebSocketResponse:
        try:
            return await self.session.ws_connect(self.ws_url(key), max_msg_size=8 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as exc:
            code = next((c.value for c, status in HTTP_STATUS.items() if status == exc.status), "handshake_failed")
            raise ApiError(exc.status, code, exc.message) from None
