"""Processes of the Kubernetes stack, started as the pods would run them (same commands, same flags),
plus a client that talks to agents through the router and reconnects with its cursor.

Used by the e2e tests and by bench/operator.py (which puts tests/e2e on sys.path).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agent_runtime.tools.landlock import landlock_available

ROOT = Path(__file__).resolve().parents[2]
AGENTCTL = [sys.executable, "-m", "agent_runtime.cli.main"]
URL_LINE = re.compile(rb"listening on (http://\S+)")


class Proc:
    """One child process with its output in a log file; `url` parsed from its 'listening on' line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)
        self.url: str | None = None

    def wait_url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = URL_LINE.search(self.log_path.read_bytes())
            if m:
                self.url = m.group(1).decode()
                return self.url
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return int(self.proc.returncode or 0)


def shard_argv(namespace: str, pool: str, shard: str, data: Path, kubeconfig: Path, *, lease_duration: int = 15,
               status_rate: float = 20.0, idle_timeout: float = 30.0) -> list[str]:
    """What the StatefulSet's container runs (the pod gets SHARD from its name, the rest from the pool;
    a pool's default toolSandbox requires confinement, which this machine can give when it has Landlock)."""
    return [*AGENTCTL, "shard", "--namespace", namespace, "--pool", pool, "--shard", shard, "--data", str(data),
            "--listen", "127.0.0.1:0", "--kubeconfig", str(kubeconfig), "--lease-duration", str(lease_duration),
            "--status-rate", str(status_rate), "--idle-timeout", str(idle_timeout),
            *(["--tool-confinement-required"] if landlock_available() else [])]


def start_shard(namespace: str, pool: str, shard: str, data: Path, kubeconfig: Path, log_dir: Path,
                **kw: Any) -> Proc:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = Proc(shard, shard_argv(namespace, pool, shard, data, kubeconfig, **kw), env, log_dir)
    p.wait_url()
    return p


def start_router(kubeconfig: Path, log_dir: Path, namespaces: tuple[str, ...] = ()) -> Proc:
    argv = [*AGENTCTL, "router", "--listen", "127.0.0.1:0", "--kubeconfig", str(kubeconfig)]
    for ns in namespaces:
        argv += ["--namespace", ns]
    p = Proc("router", argv, {**os.environ, "PYTHONUNBUFFERED": "1"}, log_dir)
    p.wait_url()
    return p


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; its last value or an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


class RoutedAgent:
    """A client of one agent through the router: keeps every event it received (by seq), reconnects
    with its cursor on 1012/refusals, resends unacknowledged messages with the same id (idempotent)."""

    def __init__(self, http: aiohttp.ClientSession, router_url: str, key: str, token: str) -> None:
        self.http = http
        self.url = router_url.replace("http://", "ws://") + f"/v1/agents/{key}/ws"
        self.key = key
        self.headers = {"Authorization": f"Bearer {token}"}
        self.events: dict[int, dict[str, Any]] = {}
        self.acks: dict[str, int] = {}
        self.closes: list[int | None] = []
        self.refusals: list[int] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def cursor(self) -> int:
        seq = 0
        while seq + 1 in self.events:
            seq += 1
        return seq

    async def connect(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ws = await self.http.ws_connect(self.url, headers=self.headers, heartbeat=20)
                try:
                    await self.ws.send_str(orjson.dumps({"type": "hello", "cursor": self.cursor}).decode())
                    frame = await self._recv(15)
                except BaseException:
                    await self.ws.close()
                    raise
                if frame is not None and frame.get("type") == "welcome":
                    return
                await self.ws.close()
            except aiohttp.WSServerHandshakeError as exc:
                self.refusals.append(exc.status)
                if exc.status not in (503, 404) or time.monotonic() > deadline:
                    raise
            except (aiohttp.ClientError, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"could not attach to {self.key} through the router")
            await asyncio.sleep(0.2)

    async def _recv(self, timeout: float) -> dict[str, Any] | None:
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            frame: dict[str, Any] = orjson.loads(msg.data)
            if frame.get("type") == "event":
                self.events[frame["seq"]] = frame
            elif frame.get("type") == "ack":
                self.acks[frame["id"]] = frame["seq"]
            return frame
        # the code the server sent (ws.close_code may say 1006 if it dropped the TCP connection right after)
        self.closes.append(int(msg.data) if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code)
        return None

    async def send(self, text: str, message_id: str | None = None, timeout: float = 60) -> int:
        """Send until acknowledged (reconnecting as needed); returns the acknowledged seq."""
        mid = message_id or uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while mid not in self.acks:
            if self.ws is None or self.ws.closed:
                await self.connect(max(1.0, deadline - time.monotonic()))
            assert self.ws is not None
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                await self.ws.send_str(orjson.dumps({"type": "user_message", "id": mid, "text": text}).decode())
            while mid not in self.acks and self.ws is not None and not self.ws.closed:
                try:
                    frame = await self._recv(max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                if frame is None:
                    break
                if frame.get("type") == "error" and frame.get("id") == mid:
                    await asyncio.sleep(0.3)
                    break  # e.g. stopped while moving: send again (same id: no duplicate)
            if time.monotonic() > deadline:
                raise AssertionError(f"message {mid} to {self.key} never acknowledged")
        return self.acks[mid]

    async def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Read (reconnecting with the cursor when closed) until an event matches `pred`."""
        deadline = time.monotonic() + timeout
        for e in self.events.values():
            if pred(e):
                return e
        while True:
            if self.ws is None or self.ws.closed:
                await self.connect(max(1.0, deadline - time.monotonic()))
            try:
                frame = await self._recv(max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                frame = None
            if frame is not None and frame.get("type") == "event" and pred(frame):
                return frame
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.key}: no matching event within {timeout}s (cursor {self.cursor})")

    async def until_idle_after(self, seq: int, timeout: float = 60) -> dict[str, Any]:
        return await self.until(lambda e: e["seq"] > seq and e["kind"] == "status"
                                and e["data"].get("state") == "idle", timeout)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def idle(event: dict[str, Any]) -> bool:
    return event["kind"] == "status" and event["data"].get("state") == "idle"
