"""The built-in tools against real subprocesses and real files: output and exit codes, timeouts
and cancellation that kill the whole process group, capped runaway output with bounded memory,
file round trips, workspace confinement, a scrubbed environment."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from agent_runtime.messages import ToolCall, ToolResult
from agent_runtime.tools import ToolContext, ToolRegistry, default_registry
from agent_runtime.tools.versions import file_version

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("error"), pytest.mark.asyncio]


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Surface unclosed pipes/processes (ResourceWarning) inside the test that leaked them."""
    yield
    gc.collect()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    return d


@pytest.fixture
def reg() -> ToolRegistry:
    return default_registry()


async def run(reg: ToolRegistry, ctx: ToolContext, name: str, **args: object) -> ToolResult:
    return await reg.execute(ToolCall("call-1", name, dict(args)), ctx)


def live_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, state) of the non-zombie processes whose process group is `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            found.append((int(entry), state))
    return found


async def assert_group_gone(pgid: int, within: float = 3.0) -> None:
    """No process of group `pgid` remains. Killed orphans are reparented to PID 1; if PID 1 does not
    reap (as in some containers), their zombies keep `killpg(pgid, 0)` succeeding, so zombies are
    accepted: they run nothing and hold no resources but a pid."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        live = live_members(pgid)
        if not live:
            return
        assert time.monotonic() < deadline, f"process group {pgid} still has live members: {live}"
        await asyncio.sleep(0.02)


async def wait_for_pgid(ws: Path, members: int) -> int:
    """The pgid a command wrote to `pgid` (its `$$`), once the group has `members` live processes."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = (ws / "pgid").read_text() if (ws / "pgid").exists() else ""
        if text.endswith("\n"):
            pgid = int(text)
            if len(live_members(pgid)) >= members:
                return pgid
        await asyncio.sleep(0.01)
    raise AssertionError("the command did not start")


# --- shell ------------------------------------------------------------------------------------


async def test_shell_returns_output_and_exit_code(reg: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(ws)
    res = await run(reg, ctx, "shell", command="echo hello; echo oops >&2; pwd")
    assert not res.is_error
    assert res.content == f"hello\noops\n{ws.resolve()}\n[exit code 0]"
    assert res.tool_call_id == "call-1" and res.name == "shell" and res.duration_ms > 0


async def test_shell_nonzero_exit_is_an_error(reg: ToolRegistry, ws: Path) -> None:
    res = await run(reg, ToolContext(ws), "shell", command="printf 'no newline'; exit 7")
    assert res.is_error
    assert res.content == "no newline\n[exit code 7]"
    res = await run(reg, ToolContext(ws), "shell", command="kill -9 $$")
    assert res.is_error and res.content == "[exit code -9 (killed by SIGKILL)]"


async def test_shell_timeout_kills_the_process_group(reg: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(ws, timeout_s=30)
    started = time.monotonic()
    task = asyncio.create_task(
        run(reg, ctx, "shell", command="echo $$ > pgid; echo started; sleep 30 & sleep 30", timeout_s=0.5)
    )
    pgid = await wait_for_pgid(ws, members=3)  # sh + two sleeps
    res = await task
    elapsed = time.monotonic() - started
    assert res.is_error
    assert res.content.startswith("error[timeout]: command timed out after 0.5 s; its process group was killed.")
    assert "started" in res.content
    assert elapsed < 3, elapsed
    await assert_group_gone(pgid)


async def test_context_timeout_caps_the_argument(reg: ToolRegistry, ws: Path) -> None:
    started = time.monotonic()
    res = await run(reg, ToolContext(ws, timeout_s=0.3), "shell", command="sleep 30", timeout_s=60)
    assert res.is_error and res.content.startswith("error[timeout]: command timed out after 0.3 s")
    assert time.monotonic() - started < 3


async def test_background_jobs_do_not_outlive_the_call(reg: ToolRegistry, ws: Path) -> None:
    started = time.monotonic()
    res = await run(reg, ToolContext(ws), "shell", command="sleep 30 & echo $$ > pgid; echo done")
    assert res.content == "done\n[exit code 0]" and not res.is_error
    assert time.monotonic() - started < 3  # did not wait for the background job's end of output
    await assert_group_gone(int((ws / "pgid").read_text()))


async def test_cancellation_kills_the_process_group(reg: ToolRegistry, ws: Path) -> None:
    task = asyncio.create_task(run(reg, ToolContext(ws), "shell", command="echo $$ > pgid; sleep 30 & sleep 30"))
    pgid = await wait_for_pgid(ws, members=3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The leader was killed and reaped before CancelledError reached us.
    with pytest.raises(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    await assert_group_gone(pgid)


async def test_runaway_output_is_capped_with_bounded_memory(reg: ToolRegistry, ws: Path) -> None:
    cap = 64_000
    total = 50_000_000
    tracemalloc.start()
    try:
        res = await run(reg, ToolContext(ws, output_cap=cap), "shell", command=f"yes | head -c {total}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not res.is_error
    assert peak < 4_000_000, peak  # 50 MB went through; at most the cap plus a few read chunks stayed
    head, note, rest = res.content.partition(f"\n[... {total - cap} bytes elided ...]\n")
    assert note, res.content[:200]
    assert head == "y\n" * (cap // 4)
    assert rest == "y\n" * (cap // 4) + "[exit code 0]"
    assert len(res.content.encode()) <= cap + 100


async def test_endless_output_until_timeout_is_capped(reg: ToolRegistry, ws: Path) -> None:
    res = await run(reg, ToolContext(ws, output_cap=1000), "shell", command="yes runaway", timeout_s=0.5)
    assert res.is_error and res.content.startswith("error[timeout]")
    assert "bytes elided ...]" in res.content
    assert len(res.content.encode()) < 1300


async def test_shell_environment_is_scrubbed(reg: ToolRegistry, ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-value")
    res = await run(reg, ToolContext(ws), "shell", command="env; echo token=${SECRET_TOKEN:-unset}")
    assert not res.is_error
    assert "SECRET_TOKEN" not in res.content and "s3cr3t-value" not in res.content
    assert "aws-value" not in res.content and "token=unset" in res.content
    env = dict(line.split("=", 1) for line in res.content.splitlines() if "=" in line and not line.startswith("token"))
    assert env["HOME"] == str(ws.resolve()) and env["LANG"] == "C.UTF-8" and env["PATH"]
    assert env["TMPDIR"] == str(ws.resolve() / ".tmp")
    assert set(env) <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD"}


async def test_shell_stdin_is_empty(reg: ToolRegistry, ws: Path) -> None:
    res = await run(reg, ToolContext(ws), "shell", command="cat; echo end")
    assert res.content == "end\n[exit code 0]"


async def test_many_shells_concurrently(reg: ToolRegistry, ws: Path) -> None:
    results = await asyncio.gather(*(run(reg, ToolContext(ws), "shell", command=f"echo {i}") for i in range(50)))
    assert [r.content for r in results] == [f"{i}\n[exit code 0]" for i in range(50)]


# --- files ------------------------------------------------------------------------------------


async def test_write_then_read_round_trip(reg: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(ws)
    content = "line 1\nünïcødé ✓\n\nlast line without newline"
    res = await run(reg, ctx, "write_file", path="deep/er/notes.txt", content=content)
    assert (res.content, res.is_error) == (f"wrote {len(content.encode())} bytes to deep/er/notes.txt", False)
    assert (ws / "deep/er/notes.txt").read_text() == content
    res = await run(reg, ctx, "read_file", path="deep/er/notes.txt")
    version = file_version(content.encode())
    assert (res.content, res.is_error) == (f"{content}\n[version: {version}]", False)
    res = await run(reg, ctx, "read_file", path="deep/er/notes.txt", offset=2, limit=2)
    assert res.content.startswith("ünïcødé ✓\n\n[... limit of 2 lines reached;")
    assert "continue with offset=4" in res.content
    # Overwrite keeps the file's mode and leaves no temporary file behind.
    (ws / "deep/er/notes.txt").chmod(0o755)
    await run(reg, ctx, "write_file", path="deep/er/notes.txt", content="new")
    assert (ws / "deep/er/notes.txt").read_text() == "new"
    assert (ws / "deep/er/notes.txt").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in (ws / "deep/er").iterdir()) == ["notes.txt"]


async def test_read_file_is_capped_with_a_continuation_offset(reg: ToolRegistry, ws: Path) -> None:
    (ws / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 100_001)))
    res = await run(reg, ToolContext(ws, output_cap=1000), "read_file", path="big.txt")
    assert not res.is_error
    body, _, note = res.content.rpartition("\n[... ")
    assert len(body.encode()) <= 1000 and body.startswith("line 1\nline 2\n")
    assert "output cap of 1000 bytes reached" in note
    next_offset = int(note.split("continue with offset=")[1].split(" ")[0])
    res = await run(reg, ToolContext(ws, output_cap=1000), "read_file", path="big.txt", offset=next_offset, limit=1)
    assert res.content.startswith(f"line {next_offset}\n")
    res = await run(reg, ToolContext(ws), "read_file", path="big.txt", offset=100_000)
    assert res.content.startswith("line 100000\n[version: v-")
    res = await run(reg, ToolContext(ws), "read_file", path="big.txt", offset=200_000)
    assert not res.is_error and "past the end" in res.content


async def test_read_file_errors(reg: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(ws)
    res = await run(reg, ctx, "read_file", path="missing.txt")
    assert (res.content, res.is_error) == ("error[not_found]: missing.txt: no such file or directory", True)
    (ws / "d").mkdir()
    res = await run(reg, ctx, "read_file", path="d")
    assert res.is_error and res.content.startswith(("error[not_a_file]", "error[is_a_directory]"))
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    res = await run(reg, ctx, "read_file", path="blob.bin")
    assert res.is_error and res.content.startswith("error[binary_file]")


async def test_write_file_errors(reg: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(ws)
    (ws / "d").mkdir()
    res = await run(reg, ctx, "write_file", path="d", content="x")
    assert res.is_error and res.content.startswith("error[is_a_directory]")
    (ws / "f").write_text("x")
    res = await run(reg, ctx, "write_file", path="f/child.txt", content="x")
    assert res.is_error and "f/child.txt" in res.content


async def test_list_dir(reg: ToolRegistry, ws: Path, outside: Path) -> None:
    ctx = ToolContext(ws)
    assert (await run(reg, ctx, "list_dir")).content == "[. is empty]"
    for name in ["b.txt", "a.txt", "Z.md"]:
        (ws / name).write_text("x")
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "pkg" / "m.py").write_text("")
    (ws / ".hidden").mkdir()
    (ws / "out_link").symlink_to(outside)
    res = await run(reg, ctx, "list_dir")
    assert (res.content, res.is_error) == ("\n".join([".hidden/", "Z.md", "a.txt", "b.txt", "out_link/", "src/"]), False)
    assert (await run(reg, ctx, "list_dir", path="src")).content == "pkg/"
    assert (await run(reg, ctx, "list_dir", path="src/pkg/")).content == "m.py"
    res = await run(reg, ctx, "list_dir", path="a.txt")
    assert res.is_error and res.content.startswith("error[not_a_directory]")
    res = await run(reg, ctx, "list_dir", path="nope")
    assert res.is_error and res.content.startswith("error[not_found]")


async def test_list_dir_caps_the_count(reg: ToolRegistry, ws: Path) -> None:
    for i in range(1005):
        (ws / f"f{i:04d}").touch()
    res = await run(reg, ToolContext(ws), "list_dir")
    lines = res.content.splitlines()
    assert lines[0] == "f0000" and lines[999] == "f0999" and len(lines) == 1001
    assert lines[1000].startswith("[... 5 more entries not shown")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
async def test_path_escapes_are_refused(reg: ToolRegistry, ws: Path, outside: Path, kind: str) -> None:
    (outside / "secret.txt").write_text("top secret")
    (ws / "link").symlink_to(outside)
    target = {"dotdot": "../outside", "absolute": str(outside), "symlink": "link"}[kind]
    ctx = ToolContext(ws)
    results = [
        await run(reg, ctx, "read_file", path=f"{target}/secret.txt"),
        await run(reg, ctx, "write_file", path=f"{target}/pwned.txt", content="x"),
        await run(reg, ctx, "write_file", path=f"{target}/new/dir/pwned.txt", content="x"),
        await run(reg, ctx, "write_file", path=f"{target}/secret.txt", content="overwritten"),
        await run(reg, ctx, "list_dir", path=target),
    ]
    for res in results:
        assert res.is_error, res
        assert res.content.startswith("error[path_escape]: path ")
        assert "outside the workspace" in res.content
        assert "top secret" not in res.content
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "top secret"


async def test_symlinked_file_pointing_outside_is_not_followed(reg: ToolRegistry, ws: Path, outside: Path) -> None:
    (outside / "secret.txt").write_text("top secret")
    (ws / "innocent.txt").symlink_to(outside / "secret.txt")
    ctx = ToolContext(ws)
    res = await run(reg, ctx, "read_file", path="innocent.txt")
    assert res.is_error and "symlink" in res.content
    res = await run(reg, ctx, "write_file", path="innocent.txt", content="x")
    assert res.is_error and (outside / "secret.txt").read_text() == "top secret"


async def test_file_io_on_a_shared_executor(reg: ToolRegistry, ws: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        ctx = ToolContext(ws, executor=pool)
        assert not (await run(reg, ctx, "write_file", path="x.txt", content="via pool")).is_error
        assert (await run(reg, ctx, "read_file", path="x.txt")).content == f"via pool\n[version: {file_version(b'via pool')}]"
        assert (await run(reg, ctx, "list_dir")).content == "x.txt"


async def test_without_pidfd_the_exit_is_polled(reg: ToolRegistry, ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    res = await run(reg, ToolContext(ws), "shell", command="echo polled; exit 3")
    assert (res.content, res.is_error) == ("polled\n[exit code 3]", True)
    task = asyncio.create_task(run(reg, ToolContext(ws), "shell", command="echo $$ > pgid; sleep 30 & sleep 30",
                                   timeout_s=0.5))
    pgid = await wait_for_pgid(ws, members=3)
    assert (await task).content.startswith("error[timeout]")
    await assert_group_gone(pgid)


@pytest.mark.parametrize("tool", ["read_file", "edit_file"])
async def test_a_fifo_in_the_workspace_is_refused_without_blocking_a_file_io_thread(reg: ToolRegistry, ws: Path,
                                                                                   tool: str) -> None:
    # The agent's own shell can `mkfifo`: opening it for reading blocks until a writer comes, which
    # would wedge one of the shard's few file-IO threads (every agent's file tools) for good.
    fifo = ws / "pipe"
    os.mkfifo(fifo)
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    ctx = ToolContext(ws, executor=pool, timeout_s=0.2)
    args: dict[str, object] = {"path": "pipe"}
    if tool == "edit_file":
        args.update(version="v-0", old_text="a", new_text="b")
    try:
        result = await run(reg, ctx, tool, **args)
        assert result.is_error and result.content.startswith("error[not_a_file]"), result.content
        # the thread is free: a normal read goes through at once
        (ws / "a.txt").write_text("hello\n")
        ok = await asyncio.wait_for(run(reg, ctx, "read_file", path="a.txt"), 2.0)
        assert ok.content.startswith("hello")
    finally:
        with contextlib.suppress(OSError):  # release a thread stuck in open() so the pool can shut down
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pool.shutdown(wait=True)
