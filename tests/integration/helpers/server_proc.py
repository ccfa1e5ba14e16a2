"""Start `slow_server.py` as a real child process and talk to it like a client would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LAUNCHER = Path(__file__).with_name("slow_server.py")


class ServerProcess:
    """One run of the server: `await start()`, then `kill9()` or `stop()`. Output goes to files."""

    def __init__(self, data_dir: Path, log_dir: Path, *, tokens_per_s: float = 30.0, ttft_s: float = 0.2,
                 idle_timeout_s: float = 30.0, env: dict[str, str] | None = None, name: str = "server",
                 tool_read_paths: tuple[Path, ...] = ()) -> None:
        self.data_dir = data_dir
        self.args = [sys.executable, str(LAUNCHER), "--data-dir", str(data_dir), "--port", "0",
                     "--tokens-per-s", str(tokens_per_s), "--ttft", str(ttft_s), "--idle-timeout", str(idle_timeout_s)]
        for path in tool_read_paths:
            self.args += ["--tool-read-path", str(path)]
        self.env = env
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.agents_at_start = -1

    async def start(self, timeout_s: float = 30.0) -> ServerProcess:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("READY "):
                    _, self.url, token_file, agents = line.split()
                    self.token = Path(token_file).read_text(encoding="utf-8").strip() if token_file != "-" else ""
                    self.agents_at_start = int(agents)
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before READY:\n{self.stderr()}")
            await asyncio.sleep(0.05)
        self.kill9()
        raise TimeoutError(f"server not ready after {timeout_s}s:\n{self.stderr()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def ws_base(self) -> str:
        return self.url.replace("http://", "ws://")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def kill9(self) -> None:
        """SIGKILL: no cleanup code of the server runs (no snapshot, no close, no checkpoint)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    async def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.kill9()
            raise TimeoutError(f"server did not stop within {timeout_s}s:\n{self.stderr()}")
        return self.proc.returncode
