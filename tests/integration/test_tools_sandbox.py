"""The shell's sandbox against real processes: resource limits (memory, CPU time, open files,
processes), a fork bomb, processes that leave the process group, and an agent that goes on
working after each of them."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from agent_runtime.messages import ToolCall, ToolResult
from agent_runtime.tools import ToolContext, ToolRegistry, default_registry
from agent_runtime.tools.sandbox import PIDS_ROOT, SandboxedCommand, pids_cgroup_available

sys.path.insert(0, str(Path(__file__).parent))
from helpers.procs import processes_with  # noqa: E402

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


def ctx(ws: Path, **kw: object) -> ToolContext:
    base: dict[str, object] = {"timeout_s": 10.0, "memory_mb": 512, "cpu_s": 5, "open_files": 64, "processes": 32}
    base.update(kw)
    return ToolContext(workspace=ws, **base)  # type: ignore[arg-type]


async def sh(reg: ToolRegistry, c: ToolContext, command: str) -> ToolResult:
    return await reg.execute(ToolCall("c", "shell", {"command": command}), c)


async def test_limits_are_set_in_the_tool_process(ws: Path) -> None:
    result = await sh(default_registry(), ctx(ws, memory_mb=300, cpu_s=7, open_files=48), "ulimit -v; ulimit -t; ulimit -n")
    assert result.content.splitlines()[:3] == [str(300 * 1024), "7", "48"], result.content


async def test_memory_limit_stops_a_hog_and_the_agent_goes_on(ws: Path) -> None:
    reg = default_registry()
    hog = await sh(reg, ctx(ws, memory_mb=200), "python3 -c 'x = bytearray(600 * 1024 * 1024); print(len(x))'")
    assert hog.is_error and "MemoryError" in hog.content
    assert (await sh(reg, ctx(ws), "echo fine")).content.startswith("fine")


async def test_cpu_limit_stops_a_spinner_before_the_wall_clock_timeout(ws: Path) -> None:
    t0 = time.perf_counter()
    spin = await sh(default_registry(), ctx(ws, cpu_s=1, timeout_s=20.0), "while :; do :; done")
    assert spin.is_error and ("SIGXCPU" in spin.content or "SIGKILL" in spin.content), spin.content
    assert time.perf_counter() - t0 < 10


async def test_open_files_limit(ws: Path) -> None:
    script = "import os\nfds = [os.open('/dev/null', os.O_RDONLY) for _ in range(200)]\nprint(len(fds))"
    (ws / "fds.py").write_text(script)
    result = await sh(default_registry(), ctx(ws, open_files=32), "python3 fds.py")
    assert result.is_error and "Too many open files" in result.content


@pytest.mark.skipif(not pids_cgroup_available(), reason="needs a writable cgroup v1 pids hierarchy (root in a container)")
async def test_fork_bomb_is_contained_and_cleaned_up(ws: Path) -> None:
    reg = default_registry()
    root = PIDS_ROOT / "agent-runtime"
    before = set(root.iterdir())
    t0 = time.perf_counter()
    bomb = await sh(reg, ctx(ws, processes=24, timeout_s=2.0), "bomb() { bomb | bomb & }; bomb; sleep 5")
    assert bomb.is_error and time.perf_counter() - t0 < 15
    # The call's cgroup, unless it is already removed (it can only be removed once empty).
    left = [p for p in set(root.iterdir()) - before if p.name.startswith(f"call-{os.getpid()}-")]
    assert len(left) <= 1
    cgroup = left[0] if left else root / "removed-already"

    def live_members() -> list[int]:
        """Processes still in the call's cgroup that are not zombies waiting for init to reap them."""
        try:
            pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
        except OSError:
            return []  # the cgroup is gone
        live = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                live.append(pid)
        return live

    # Contained: every process of the call is killed, even those forked while we were killing.
    for _ in range(600):
        if not live_members():
            break
        await asyncio.sleep(0.05)
    assert live_members() == []
    # Cleaned up: the cgroup is removed once init has reaped the killed processes (init's pace, not
    # ours, on a loaded machine; a cgroup left then is removed by `reap_orphans` at the next start).
    for _ in range(600):
        if not cgroup.exists():
            break
        await asyncio.sleep(0.05)
    zombies = cgroup.exists() and bool((cgroup / "cgroup.procs").read_text().split())
    assert not cgroup.exists() or zombies
    assert (await sh(reg, ctx(ws), "echo after")).content.startswith("after")


@pytest.mark.skipif(not pids_cgroup_available(), reason="needs a writable cgroup v1 pids hierarchy (root in a container)")
async def test_processes_that_leave_the_group_are_killed_too(ws: Path) -> None:
    marker = f"sleep 77.{os.getpid()}"
    result = await sh(default_registry(), ctx(ws), f"setsid sh -c '{marker}' > /dev/null 2>&1 & echo started")
    assert result.content.startswith("started")
    for _ in range(100):
        if not processes_with(marker):
            break
        await asyncio.sleep(0.02)
    assert processes_with(marker) == []


@pytest.mark.skipif(not pids_cgroup_available(), reason="needs a writable cgroup v1 pids hierarchy (root in a container)")
async def test_process_limit_counts_every_descendant(ws: Path) -> None:
    result = await sh(default_registry(), ctx(ws, processes=6), "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait; echo done")
    assert "fork" in result.content.lower() or "resource temporarily unavailable" in result.content.lower(), result.content


def test_without_prlimit_the_limits_are_set_by_preexec(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent_runtime.tools.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_PRLIMIT", None)
    cmd = SandboxedCommand("true", ctx(ws))
    assert cmd.preexec_fn is not None and "prlimit" not in " ".join(cmd.argv)
    cmd.kill_all()
    assert cmd.release()


@pytest.mark.skipif(not pids_cgroup_available(), reason="needs a writable cgroup v1 pids hierarchy (root in a container)")
def test_leftovers_of_a_dead_runtime_are_killed_and_removed(tmp_path: Path) -> None:
    """A runtime killed with -9 leaves its calls' cgroups (and processes) behind; the next one
    cleans them up. Simulated with a child process that plays the dead runtime."""
    import subprocess

    from agent_runtime.tools.sandbox import reap_orphans

    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()  # its pid is now free: the "runtime" that owned the cgroup below is gone
    group = PIDS_ROOT / "agent-runtime" / f"call-{dead.pid}-0"
    group.mkdir()
    marker = f"sleep 78.{os.getpid()}"
    orphan = subprocess.Popen(["/bin/sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec {marker}'])
    for _ in range(100):
        if (group / "cgroup.procs").read_text().split():
            break
        time.sleep(0.01)
    assert reap_orphans() >= 1
    assert orphan.wait(timeout=5) == -9
    reap_orphans()  # now that it is reaped (init does it for a real orphan), the cgroup goes
    assert not group.exists()
