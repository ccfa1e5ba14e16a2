"""Landlock confinement of the shell against real processes on a shard-like data dir: a call cannot
read a sibling agent's log, a token file outside its workspace, other processes' /proc, nor write
outside its workspace; programs still run, the workspace and $TMPDIR are writable, and the agent
sees a readable "Permission denied" in the tool's output."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_runtime.messages import ToolCall, ToolResult
from agent_runtime.tools import ToolContext, ToolRegistry, default_registry, sandbox
from agent_runtime.tools.landlock import abi_version, build_ruleset, policy, unavailable_reason
from agent_runtime.tools.sandbox import CONFINE, landlock_available

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not landlock_available(), reason=f"Landlock unavailable: {unavailable_reason()}"),
]


@dataclasses.dataclass
class Shard:
    data: Path
    ws: Path
    sibling_log: Path
    admin_token: Path
    sa_token: Path


@pytest.fixture
def shard(tmp_path: Path) -> Shard:
    data = tmp_path / "data"
    ws = data / "agents" / "team" / "alice" / "workspace"
    ws.mkdir(parents=True)
    (data / "agents" / "team" / "alice" / "events.db").write_bytes(b"SQLite format 3\x00 alice's own log")
    bob = data / "agents" / "team" / "bob"
    (bob / "workspace").mkdir(parents=True)
    (bob / "events.db").write_bytes(b"SQLite format 3\x00 bob-secret-conversation")
    (data / "admin.token").write_text("admin-token-value\n")
    secrets = tmp_path / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
    secrets.mkdir(parents=True)
    (secrets / "token").write_text("eyJhbGciOi-service-account-token\n")
    return Shard(data, ws, bob / "events.db", data / "admin.token", secrets / "token")


@pytest.fixture
def reg() -> ToolRegistry:
    return default_registry()


def ctx(shard: Shard, **kw: object) -> ToolContext:
    base: dict[str, object] = {"timeout_s": 20.0, "memory_mb": 1024, "cpu_s": 10, "open_files": 64, "processes": 32}
    base.update(kw)
    return ToolContext(workspace=shard.ws, **base)  # type: ignore[arg-type]


async def sh(reg: ToolRegistry, c: ToolContext, command: str) -> ToolResult:
    return await reg.execute(ToolCall("c", "shell", {"command": command}), c)


async def test_cannot_read_a_sibling_agents_log_or_folder(reg: ToolRegistry, shard: Shard) -> None:
    res = await sh(reg, ctx(shard), f"cat {shard.sibling_log}")
    assert res.is_error
    assert f"cat: {shard.sibling_log}: Permission denied" in res.content
    assert "bob-secret" not in res.content and "[exit code 1]" in res.content
    # Nor by a relative path, nor by listing, nor through a symlink made in its own workspace.
    res = await sh(reg, ctx(shard), "cat ../../bob/events.db; ls ../..; ln -s ../../bob/events.db link && cat link")
    assert res.content.count("Permission denied") == 3, res.content
    assert "bob-secret" not in res.content and "workspace" not in res.content.replace(str(shard.ws), "")
    # Its own log is outside its workspace too: the agent cannot rewrite its history.
    res = await sh(reg, ctx(shard), "cat ../events.db; echo forged >> ../events.db")
    assert res.content.count("Permission denied") == 2, res.content


async def test_cannot_read_token_files_outside_the_workspace(reg: ToolRegistry, shard: Shard) -> None:
    res = await sh(reg, ctx(shard), f"cat {shard.sa_token}; cat {shard.admin_token}; ls {shard.data}")
    assert res.content.count("Permission denied") == 3, res.content
    assert "service-account-token" not in res.content and "admin-token-value" not in res.content


async def test_cannot_write_outside_the_workspace(reg: ToolRegistry, shard: Shard, tmp_path: Path) -> None:
    targets = [shard.sibling_log.parent / "workspace" / "planted.sh", shard.data / "new.txt", tmp_path / "tmp-file"]
    command = "; ".join(f"echo x > {t}" for t in targets) + f"; mkdir {tmp_path / 'dir'}; rm {shard.admin_token}"
    res = await sh(reg, ctx(shard), command)
    assert res.is_error
    assert res.content.count("Permission denied") == 5, res.content
    assert not any(t.exists() for t in targets) and not (tmp_path / "dir").exists()
    assert shard.admin_token.read_text() == "admin-token-value\n"
    # The shared /tmp is not the call's temp folder: other agents' temp files live there.
    res = await sh(reg, ctx(shard), "ls /tmp; echo x > /tmp/agent-runtime-landlock-probe")
    assert res.content.count("Permission denied") == 2, res.content
    assert not Path("/tmp/agent-runtime-landlock-probe").exists()


async def test_programs_run_and_the_workspace_and_tmpdir_are_writable(reg: ToolRegistry, shard: Shard) -> None:
    script = (
        "set -e\n"
        "python3 -c 'import json, sys; print(json.dumps({\"py\": sys.version_info[0]}))'\n"
        "ls /usr/bin | grep -c . > count.txt && test \"$(cat count.txt)\" -gt 10 && echo listed\n"
        "printf 'b\\na\\nb\\n' | sort | uniq -c | sort -rn | tr -s ' ' | sed 's/^ //' | head -n 1\n"
        "mkdir -p src/pkg && echo 'print(6 * 7)' > src/pkg/m.py && python3 src/pkg/m.py\n"
        "mv src/pkg/m.py src/m2.py && rm -r src/pkg && ls src\n"
        "t=$(mktemp) && echo temp > \"$t\" && cat \"$t\" && case \"$t\" in \"$TMPDIR\"/*) echo in-tmpdir;; esac\n"
        "python3 -c 'import tempfile; f = tempfile.NamedTemporaryFile(); print(f.name.startswith(tempfile.gettempdir()))'\n"
        "echo quiet > /dev/null && head -c 4 /dev/urandom | wc -c\n"
    )
    (shard.ws / "job.sh").write_text(script)
    res = await sh(reg, ctx(shard), "sh job.sh")
    assert not res.is_error, res.content
    lines = res.content.splitlines()
    assert lines == ['{"py": 3}', "listed", "2 b", "42", "m2.py", "temp", "in-tmpdir", "True", "4", "[exit code 0]"]
    assert (shard.ws / ".tmp").is_dir()


async def test_other_processes_are_out_of_reach(reg: ToolRegistry, shard: Shard) -> None:
    # The runtime's /proc/<pid>/environ holds its provider keys: /proc is outside the policy.
    res = await sh(reg, ctx(shard), f"cat /proc/{os.getpid()}/environ; cat /proc/self/status")
    assert res.content.count("Permission denied") == 2, res.content
    # Landlock (any ABI): no ptrace of a process outside the domain. PTRACE_SEIZE does not stop
    # the tracee, so a broken confinement fails this test instead of freezing the test runner.
    seize = f"import ctypes; c = ctypes.CDLL(None, use_errno=True); print(c.ptrace(0x4206, {os.getpid()}, 0, 0), ctypes.get_errno())"
    res = await sh(reg, ctx(shard), f"python3 -c '{seize}'")
    assert res.content.startswith("-1 1\n"), res.content  # EPERM
    if abi_version() >= 6:  # scoped: no signal to processes outside the call's domain
        res = await sh(reg, ctx(shard), f"kill -0 {os.getpid()}")
        assert res.is_error and "Operation not permitted" in res.content, res.content


async def test_extra_read_paths(reg: ToolRegistry, shard: Shard, tmp_path: Path) -> None:
    toolchain = tmp_path / "toolchain"
    (toolchain / "bin").mkdir(parents=True)
    tool = toolchain / "bin" / "hello"
    tool.write_text("#!/bin/sh\necho hello from the toolchain\n")
    tool.chmod(0o755)
    res = await sh(reg, ctx(shard), str(tool))
    assert res.is_error and "Permission denied" in res.content
    res = await sh(reg, ctx(shard, read_paths=(toolchain,)), f"{tool}; echo x > {toolchain}/new")
    assert "hello from the toolchain" in res.content
    assert "Permission denied" in res.content and not (toolchain / "new").exists()  # read-only
    # A read path that contains the workspace is dropped: it would open the sibling agents.
    res = await sh(reg, ctx(shard, read_paths=(shard.data, tmp_path)), f"cat {shard.sibling_log}")
    assert "Permission denied" in res.content and "bob-secret" not in res.content


async def test_ruleset_fd_is_not_kept_and_agent_goes_on(reg: ToolRegistry, shard: Shard) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(5):
        res = await sh(reg, ctx(shard), f"cat {shard.sa_token}")
        assert "Permission denied" in res.content
    assert set(os.listdir("/proc/self/fd")) <= before
    res = await sh(reg, ctx(shard), "echo still working > ok.txt && cat ok.txt")
    assert not res.is_error and res.content.startswith("still working")


def test_wrapper_never_runs_an_unconfined_command(tmp_path: Path) -> None:
    # Not a ruleset fd: the wrapper refuses (exit 126) instead of running the command as it is.
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", CONFINE, "0", "/bin/sh", "-c", f"touch {marker}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 126
    assert "the command was not run: could not confine it (landlock_restrict_self:" in proc.stderr
    assert not marker.exists()
    usage = subprocess.run([sys.executable, "-I", "-S", CONFINE, "x"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr


async def test_without_landlock(
    reg: ToolRegistry, shard: Shard, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A kernel without Landlock (simulated: the check says no): the call runs unconfined with a
    warning once per process, or is refused when confinement is required."""
    monkeypatch.setattr(sandbox, "landlock_available", lambda: False)
    monkeypatch.setattr(sandbox, "_warned_unconfined", False)
    res = await sh(reg, ctx(shard, confinement_required=True), "echo must-not-run > ran.txt")
    assert res.is_error and res.content.startswith("error[unconfined]: tool processes must be confined"), res.content
    assert not (shard.ws / "ran.txt").exists()
    with caplog.at_level(logging.WARNING, logger="agent_runtime.tools.sandbox"):
        for _ in range(2):
            res = await sh(reg, ctx(shard), f"cat {shard.sibling_log}")
            assert "bob-secret" in res.content  # unconfined: exactly the hole Landlock closes
    warnings = [r.getMessage() for r in caplog.records if "unconfined" in r.getMessage()]
    assert len(warnings) == 1 and "shell tool calls run unconfined" in warnings[0]


async def test_missing_paths(reg: ToolRegistry, shard: Shard, tmp_path: Path) -> None:
    # A read path that does not exist grants nothing; the call runs.
    res = await sh(reg, ctx(shard, read_paths=(tmp_path / "no-such-toolchain",)), "echo fine")
    assert not res.is_error and res.content.startswith("fine")
    # Without its workspace a ruleset is not built at all (the call would fail as confinement_failed).
    with pytest.raises(FileNotFoundError):
        build_ruleset(policy(str(tmp_path / "gone"), ["/usr"]), abi_version())
    fd = build_ruleset(policy(str(shard.ws), [str(tmp_path / "missing"), "/usr"]), abi_version())
    os.close(fd)


CAP_MKNOD = 27


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


CAPGET = (
    "import ctypes, struct; libc = ctypes.CDLL(None); data = ctypes.create_string_buffer(24); "
    "libc.capget(struct.pack('II', 0x20080522, 0), data); "
    "print('caps', struct.unpack('6I', data.raw), 'bounding', sum(libc.prctl(23, c, 0, 0, 0) == 1 for c in range(64)))"
)


@pytest.mark.skipif(os.geteuid() != 0 or not _effective_capabilities(), reason="the runtime has no capabilities to leak")
async def test_a_root_runtime_gives_its_tool_processes_no_capabilities(reg: ToolRegistry, shard: Shard) -> None:
    """A runtime running as root (a container with a writable pids cgroup, `make demo` as root)
    held every capability and so did its tool calls: Landlock does not stop module loading,
    `reboot`, the clock, the network configuration, mknod... The call runs with none."""
    res = await sh(reg, ctx(shard), f'python3 -c "{CAPGET}"; id -u')
    assert not res.is_error, res.content
    assert res.content.splitlines()[:2] == ["caps (0, 0, 0, 0, 0, 0) bounding 0", "0"], res.content
    # Still uid 0 and still the owner of its files: the workspace works as before.
    res = await sh(reg, ctx(shard), "mkdir -p d && echo x > d/f && chmod +x d/f && cat d/f && rm -r d")
    assert res.content == "x\n[exit code 0]", res.content


@pytest.mark.skipif(not _effective_capabilities() & (1 << CAP_MKNOD), reason="needs CAP_MKNOD (a runtime running as root)")
async def test_no_device_nodes_in_the_workspace(reg: ToolRegistry, shard: Shard) -> None:
    """A root runtime's call could `mknod kmsg c 1 11` (or the disk, `b 254 0`) in its workspace and
    read it: the kernel log, every agent's data on the block device. Landlock's workspace rule
    does not grant MAKE_CHAR / MAKE_BLOCK (and the call holds no CAP_MKNOD either)."""
    res = await sh(reg, ctx(shard), "mknod kmsg c 1 11 && head -c 200 kmsg; mknod disk b 254 0 && head -c 200 disk")
    assert res.is_error
    assert "Linux version" not in res.content, res.content
    assert not (shard.ws / "kmsg").exists() and not (shard.ws / "disk").exists()
    # Landlock alone refuses it too (were CAP_MKNOD kept, the workspace rule is the second wall).
    fd = build_ruleset(policy(str(shard.ws), []), abi_version())
    enter_then_mknod = (
        "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
        f"assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.syscall(446, {fd}, 0) == 0; "
        "os.mknod('kmsg2', 0o600 | 0o020000, os.makedev(1, 11))"
    )
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", enter_then_mknod], cwd=shard.ws, pass_fds=(fd,),
                              capture_output=True, text=True, check=False)
    finally:
        os.close(fd)
    assert "PermissionError: [Errno 13] Permission denied" in proc.stderr, proc.stderr
    assert not (shard.ws / "kmsg2").exists()


async def test_cannot_change_the_runtimes_limits_or_priority(reg: ToolRegistry, shard: Shard) -> None:
    """The runtime is the call's parent (`$PPID`) and runs as the same user: `prlimit --pid $PPID
    --nofile=4:4` (no more sockets or SQLite files for any agent of the shard), `--cpu=1` (SIGXCPU
    kills it within a second) or `renice` were allowed, Landlock does not cover them. The probes
    write the runtime's current values back (a hole shows as success, not as a broken runner)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    probes = [
        f"prlimit --pid $PPID --nofile={soft}:{hard}",
        "prlimit --pid $PPID --nofile",  # even reading another process's limits
        f"renice -n {nice} -p $PPID",
        f"renice -n {nice} -u $(id -u)",  # PRIO_USER: every process of the user
        f"taskset -p -c {','.join(map(str, sorted(os.sched_getaffinity(0))))} $PPID",
        f"python3 -c 'import os; os.setpriority(os.PRIO_USER, 0, {nice})'",
    ]
    for probe in probes:
        res = await sh(reg, ctx(shard), f"{probe} > /dev/null && echo CHANGED")
        assert "CHANGED" not in res.content and res.is_error, f"{probe}: {res.content}"
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
    # Its own limits and priority (pid 0: the caller) still work.
    res = await sh(reg, ctx(shard), "prlimit --nofile=32:32 sh -c 'ulimit -n' && nice -n 5 nice && taskset -c 0 true && echo ok")
    assert res.content.splitlines()[:3] == ["32", "5", "ok"], res.content


SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir("d")
os.symlink(sys.argv[1], "s")
open("swapper.pid", "w").write(str(os.getpid()))
while True:  # renameat2(AT_FDCWD, "d", AT_FDCWD, "s", RENAME_EXCHANGE): "d" is the folder or the link
    libc.syscall(316, -100, b"d", -100, b"s", 2)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the swapper uses the x86_64 renameat2 number")
@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "fallback"])
async def test_file_tools_cannot_be_raced_out_of_the_workspace(
    reg: ToolRegistry, shard: Shard, openat2: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file tools run in the runtime, unconfined, and checked a path before using it. Without a
    pids cgroup (a non-root shard: the operator's pods) a `setsid` process outlives its shell call
    and can swap a folder of the workspace for a symlink to a sibling agent's folder, over and
    over: `write_file d/x` landed in the sibling's folder (next to its events.db) within 25 tries.
    The tools now open beneath the workspace (`beneath.py`; `fallback`: a kernel without openat2)."""
    from agent_runtime.tools import beneath

    if not openat2:
        monkeypatch.setattr(beneath, "_have_openat2", False)
    (shard.ws / "swap.py").write_text(SWAPPER)
    c = ctx(shard, processes=None)  # no cgroup: the swapper survives the call
    res = await sh(reg, c, "setsid python3 swap.py ../../bob > /dev/null 2>&1 < /dev/null & sleep 0.3; echo started")
    assert res.content.startswith("started"), res.content
    pid = int((shard.ws / "swapper.pid").read_text())
    leaked: list[str] = []
    outcomes: set[str] = set()
    try:
        for i in range(300):
            w = await reg.execute(ToolCall("w", "write_file", {"path": f"d/planted-{i}.txt", "content": "x"}), c)
            r = await reg.execute(ToolCall("r", "read_file", {"path": "d/events.db"}), c)
            outcomes.update(x.content.split(":")[0] for x in (w, r))
            if "bob-secret" in r.content:
                leaked.append("read bob's events.db")
            if any((shard.sibling_log.parent / f"planted-{i}.txt").exists() for _ in [0]):
                leaked.append(f"wrote bob/planted-{i}.txt: {w.content}")
            if leaked:
                break
    finally:
        os.kill(pid, 9)
    assert leaked == []
    assert "error[path_escape]" in outcomes and any(o.startswith("wrote") for o in outcomes), outcomes  # both sides of the race
    assert not list(shard.sibling_log.parent.glob("*planted*")) and not list(shard.sibling_log.parent.glob(".*tmp"))


async def test_escapes_that_hold(reg: ToolRegistry, shard: Shard) -> None:
    """Ways out that the domain closes: a hard link of a sibling's log into the workspace (REFER:
    EXDEV), a user namespace to mount /proc or a tmpfs over a denied folder (Landlock refuses
    mounts), an fd of the runtime (none is inherited; pidfd_getfd needs ptrace rights), a setuid
    program (no_new_privs)."""
    res = await sh(reg, ctx(shard), f"ln {shard.sibling_log} hl; cat hl; ls -l hl")
    assert "Invalid cross-device link" in res.content and "bob-secret" not in res.content, res.content
    res = await sh(reg, ctx(shard), "unshare -Ur sh -c 'mount -t proc proc p; mount -t tmpfs t ../..' ; unshare -m true; "
                                    "mkdir -p p && unshare -m mount -t proc proc p; cat p/1/environ")
    assert "mounted" not in res.content and not (shard.ws / "p" / "1").exists(), res.content
    fds = (
        "import os\n"
        "open_fds = []\n"
        "for n in range(3, 1024):\n"
        "    try: os.fstat(n); open_fds.append(n)\n"
        "    except OSError: pass\n"
        "print('fds', open_fds)\n"
        "import ctypes; libc = ctypes.CDLL(None, use_errno=True)\n"
        f"pidfd = libc.syscall(434, {os.getpid()}, 0)  # pidfd_open: refused by the seccomp filter\n"
        "print('pidfd_open', pidfd, ctypes.get_errno())\n"
        f"pidfd = os.open('/dev/null', os.O_RDONLY) if pidfd < 0 else pidfd\n"
        "print('getfd', [(libc.syscall(438, pidfd, n, 0), ctypes.get_errno()) for n in range(3, 8)])\n"
    )
    (shard.ws / "fds.py").write_text(fds)
    res = await sh(reg, ctx(shard), "python3 fds.py")
    lines = res.content.splitlines()
    assert lines[0] == "fds []", res.content  # nothing of the runtime: no SQLite file, socket, ruleset
    assert lines[1] == "pidfd_open -1 1", res.content  # EPERM (seccomp: the runtime's pid)
    assert lines[2].startswith("getfd [(-1,") and ", 0)" not in lines[2], res.content  # no fd of the runtime
    if Path("/usr/bin/su").exists():
        res = await sh(reg, ctx(shard), "su -c id nobody < /dev/null")
        assert res.is_error and "uid=" not in res.content.split("[exit")[0].replace("uid=0", ""), res.content


@pytest.mark.xfail(strict=True, reason="NOT FIXED: Landlock (ABI <= 7) does not handle chmod/chown/utime/xattr; "
                   "a call can chmod 000 a sibling's events.db or the data dir (same user)")
async def test_cannot_change_metadata_of_a_siblings_files(reg: ToolRegistry, shard: Shard) -> None:
    res = await sh(reg, ctx(shard), f"chmod 000 {shard.sibling_log}; touch -d 2001-01-01 {shard.sibling_log}")
    mode = shard.sibling_log.stat().st_mode & 0o777
    shard.sibling_log.chmod(0o644)
    assert mode == 0o644, (oct(mode), res.content)


@pytest.mark.xfail(strict=True, reason="NOT FIXED: Landlock does not handle inotify/fanotify marks; a call sees the "
                   "names of files created in a sibling's workspace while it runs")
async def test_cannot_watch_a_siblings_workspace(reg: ToolRegistry, shard: Shard) -> None:
    watch = (
        "import ctypes, os, struct, sys, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.inotify_init1(os.O_NONBLOCK)\n"
        "print('watch', libc.inotify_add_watch(fd, b'../../bob/workspace', 0x100), flush=True)\n"
        "open('watching', 'w').close()\n"
        "time.sleep(1.5)\n"
        "try: print(os.read(fd, 4096))\n"
        "except BlockingIOError: print('no events')\n"
    )
    (shard.ws / "watch.py").write_text(watch)
    bob_ws = shard.sibling_log.parent / "workspace"

    async def bob_writes() -> None:
        for _ in range(100):
            if (shard.ws / "watching").exists():
                break
            await asyncio.sleep(0.02)
        (bob_ws / "secret-plan.txt").write_text("x")

    writer = asyncio.ensure_future(bob_writes())
    res = await sh(reg, ctx(shard), "python3 watch.py")
    await writer
    assert "secret-plan" not in res.content, res.content


@pytest.mark.xfail(strict=True, reason="NOT FIXED: Landlock (ABI <= 7) does not handle connect() to a pathname UNIX "
                   "socket: a call reaches any socket it can name (docker.sock, a tmux or ssh-agent socket in /tmp)")
async def test_cannot_connect_to_unix_sockets_outside_the_workspace(reg: ToolRegistry, shard: Shard) -> None:
    import socket

    path = shard.data / "s.sock"  # a short path: sun_path holds 108 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        client = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); print('connected')"
        res = await sh(reg, ctx(shard), f'python3 -c "{client}"')
    assert "connected" not in res.content, res.content


@pytest.mark.xfail(strict=True, reason="NOT FIXED: without a pids cgroup (a non-root shard, the operator's pods) a "
                   "setsid process outlives its call, still confined, for as long as it likes")
async def test_nothing_outlives_a_call_without_a_cgroup(reg: ToolRegistry, shard: Shard) -> None:
    res = await sh(reg, ctx(shard, processes=None), "setsid sh -c 'echo $$ > daemon.pid; exec sleep 30' > /dev/null 2>&1 < /dev/null & sleep 0.3")
    pid = int((shard.ws / "daemon.pid").read_text())
    await asyncio.sleep(0.3)
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    assert not alive, res.content


async def test_cannot_signal_the_runtime_on_a_kernel_before_abi_6(
    reg: ToolRegistry, shard: Shard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before Landlock ABI 6 (kernels < 6.12: Debian 12, Ubuntu 22.04/24.04 GA, RHEL 9) signals
    are not scoped: `kill -9 $PPID` ended the shard, `kill -9 -1` every process of the user. The
    wrapper's seccomp filter refuses signals to the runtime, its group and -1 (other calls' processes
    stay reachable there: not fixed). Signal 0 probes only."""
    from agent_runtime.tools import landlock

    monkeypatch.setattr(landlock, "_abi", 5)  # the ruleset of a 6.7-6.11 kernel: no scopes
    for probe in ("kill -0 $PPID", "kill -0 -- -$PPID", "kill -0 -- -1",
                  "python3 -c 'import os; os.pidfd_open('$PPID')'"):
        res = await sh(reg, ctx(shard), f"{probe} && echo SIGNALLED")
        assert "SIGNALLED" not in res.content and res.is_error, f"{probe}: {res.content}"
    res = await sh(reg, ctx(shard), "sleep 5 & kill $! && wait $!; echo own-child-killed $?")  # its own processes: fine
    assert "own-child-killed 143" in res.content, res.content
