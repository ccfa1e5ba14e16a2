"""The pure half of the Landlock confinement: which rights a kernel's ABI handles, what each kind of
rule grants, the policy's path list; and how the CLI flags reach the actor's config."""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import pytest

from agent_runtime.cli.main import _actor_config, build_parser
from agent_runtime.tools import landlock as ll
from agent_runtime.tools.landlock import Access, Rule, handled_fs, policy, rule_access, scoped

ABI1 = 0x1FFF  # EXECUTE .. MAKE_SYM


@pytest.mark.parametrize(
    ("abi", "mask"),
    [
        (0, 0),
        (1, ABI1),
        (2, ABI1 | ll.REFER),
        (3, ABI1 | ll.REFER | ll.TRUNCATE),
        (4, ABI1 | ll.REFER | ll.TRUNCATE),  # ABI 4 adds TCP rules only (not handled: network open)
        (5, ABI1 | ll.REFER | ll.TRUNCATE | ll.IOCTL_DEV),
        (6, ABI1 | ll.REFER | ll.TRUNCATE | ll.IOCTL_DEV),
        (7, ABI1 | ll.REFER | ll.TRUNCATE | ll.IOCTL_DEV),  # ABI 7: audit flags, no new right
        (9, ABI1 | ll.REFER | ll.TRUNCATE | ll.IOCTL_DEV),  # a newer kernel: only the rights we know
    ],
)
def test_handled_rights_by_abi(abi: int, mask: int) -> None:
    assert handled_fs(abi) == mask


def test_scopes_from_abi_6() -> None:
    assert [scoped(abi) for abi in range(8)] == [0] * 6 + [ll.SCOPE_SIGNAL | ll.SCOPE_ABSTRACT_UNIX_SOCKET] * 2


def test_rule_access() -> None:
    read_exec = ll.EXECUTE | ll.READ_FILE | ll.READ_DIR
    # The workspace: everything but making device nodes (mknod of a disk or /dev/kmsg by a root runtime).
    assert rule_access(Access.ALL, 1, is_dir=True) == ABI1 & ~(ll.MAKE_CHAR | ll.MAKE_BLOCK)
    assert rule_access(Access.ALL, 7, is_dir=True) == handled_fs(7) & ~(ll.MAKE_CHAR | ll.MAKE_BLOCK)
    assert rule_access(Access.READ_EXECUTE, 1, is_dir=True) == read_exec
    assert rule_access(Access.READ_EXECUTE, 7, is_dir=True) == read_exec  # never write, remove, make
    # A rule on a file may hold file rights only (the kernel refuses folder rights: EINVAL).
    assert rule_access(Access.READ_EXECUTE, 7, is_dir=False) == ll.EXECUTE | ll.READ_FILE
    assert rule_access(Access.ALL, 7, is_dir=False) == ll.FILE_RIGHTS
    # Devices: read, write; `> /dev/null` (O_TRUNC) and ioctls once the ABI handles them.
    assert rule_access(Access.DEVICE, 1, is_dir=False) == ll.READ_FILE | ll.WRITE_FILE
    assert rule_access(Access.DEVICE, 3, is_dir=False) == ll.READ_FILE | ll.WRITE_FILE | ll.TRUNCATE
    assert rule_access(Access.DEVICE, 5, is_dir=False) == ll.READ_FILE | ll.WRITE_FILE | ll.TRUNCATE | ll.IOCTL_DEV
    assert rule_access(Access.ALL, 0, is_dir=True) == 0


def test_policy_paths() -> None:
    ws = "/data/agents/ns/a/workspace"
    rules = policy(ws, ["/usr", "/etc", "/usr", ws, "/data/agents/ns/ab", "/opt/tool"], devices=["/dev/null"])
    assert rules == [
        Rule(ws, Access.ALL),
        Rule("/usr", Access.READ_EXECUTE),
        Rule("/etc", Access.READ_EXECUTE),
        Rule("/data/agents/ns/ab", Access.READ_EXECUTE),  # a sibling named like a prefix: not an ancestor
        Rule("/opt/tool", Access.READ_EXECUTE),
        Rule("/dev/null", Access.DEVICE),
    ]


@pytest.mark.parametrize("ancestor", ["/", "/data", "/data/", "/data/agents", "/data/agents/ns/a", "/data/agents/ns/a/workspace"])
def test_policy_drops_a_read_path_that_contains_the_workspace(ancestor: str) -> None:
    # Read access to an ancestor of the workspace would open every sibling agent's folder and log.
    ws = "/data/agents/ns/a/workspace"
    assert policy(ws, [ancestor, "/usr"], devices=[]) == [Rule(ws, Access.ALL), Rule("/usr", Access.READ_EXECUTE)]


def test_policy_has_no_tmp_proc_or_secrets() -> None:
    paths = {r.path for r in policy("/w", ll.SYSTEM_READ_PATHS)}
    assert not paths & {"/tmp", "/proc", "/sys", "/run", "/var", "/root", "/home", "/dev", "/dev/shm"}


def test_cli_flags_reach_the_actor_config() -> None:
    for command in (["serve"], ["shard"]):
        args = build_parser().parse_args([*command, "--tool-read-path", "/nix", "--tool-read-path", "/opt/x",
                                          "--tool-confinement-required"])
        config = _actor_config(args)
        assert config.tool_read_paths == (Path("/nix"), Path("/opt/x"))
        assert config.tool_confinement_required is True
        default = _actor_config(build_parser().parse_args(command))
        assert default.tool_read_paths == () and default.tool_confinement_required is False


def test_cli_rejects_a_relative_read_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--tool-read-path", "nix/store"])
    assert "expected an absolute path" in capsys.readouterr().err


def _run_bpf(program: bytes, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """A classic-BPF interpreter for the few instructions `seccomp_program` uses."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    ins = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = ins[pc]
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code in (0x15, 0x35):
            hit = acc == k if code == 0x15 else acc >= k
            pc += jt if hit else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected BPF instruction {code:#x}")
        pc += 1


def test_seccomp_program_refuses_other_processes_only() -> None:
    from agent_runtime.tools import confine

    allow, eperm = 0x7FFF0000, 0x00050001
    assert confine.seccomp_program("riscv64") is None  # unknown: no filter (Landlock still applies)
    for machine, (arch, nr) in confine._SYSCALLS.items():
        prog = confine.seccomp_program(machine)
        assert prog is not None and len(prog) % 8 == 0
        run = functools.partial(_run_bpf, prog, arch)
        assert run(nr["prlimit64"], (0, 7, 0, 0)) == allow  # its own limits
        assert run(nr["prlimit64"], (4242, 7, 0, 0)) == eperm  # the runtime's ($PPID)
        assert run(nr["prlimit64"], ((1 << 32) | 4242,)) == eperm  # high bits are ignored by the kernel too
        assert run(nr["setpriority"], (0, 0, 5)) == allow and run(nr["setpriority"], (1, 0, 5)) == allow
        assert run(nr["setpriority"], (0, 4242, 5)) == eperm and run(nr["setpriority"], (2, 0, 5)) == eperm  # PRIO_USER
        assert run(nr["ioprio_set"], (1, 0, 0)) == allow and run(nr["ioprio_set"], (3, 0, 0)) == eperm
        for name in ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr"):
            assert run(nr[name], (0,)) == allow and run(nr[name], (4242,)) == eperm
        assert run(0, (4242,)) == allow and run(63, (4242,)) == allow  # anything else: untouched
        # Signals (Landlock scopes them from ABI 6 only): never to the runtime, its group, or -1.
        guarded = confine.seccomp_program(machine, (4242, -4242, -4000))
        assert guarded is not None
        g = functools.partial(_run_bpf, guarded, arch)
        for pid in (4242, -4242, -4000, -1):
            assert g(nr["kill"], (pid & 0xFFFFFFFF, 9)) == eperm, pid
        assert g(nr["kill"], (4243, 9)) == allow and g(nr["kill"], (0, 9)) == allow  # its own children, its group
        assert g(nr["tgkill"], (4242, 4242, 9)) == eperm and g(nr["tgkill"], (4243, 4243, 9)) == allow
        assert g(nr["tkill"], (4243, 9)) == eperm  # a thread id: could be one of the runtime's threads
        assert g(nr["pidfd_open"], (4242, 0)) == eperm and g(nr["pidfd_open"], (4243, 0)) == allow
        assert g(nr["rt_sigqueueinfo"], (4242,)) == eperm and g(nr["rt_tgsigqueueinfo"], (4242,)) == eperm
        assert g(nr["prlimit64"], (4243,)) == eperm and g(nr["prlimit64"], (0,)) == allow
        assert _run_bpf(prog, 0x40000003, nr["prlimit64"], (0,)) == eperm  # another ABI (i386)
    x86 = confine.seccomp_program("x86_64")
    assert x86 is not None and _run_bpf(x86, 0xC000003E, 0x40000000 | 302, (4242,)) == eperm  # x32


def test_a_server_refuses_to_start_with_a_secret_its_tools_could_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator mounted the admin token under /etc (readable by every call): a shard or server
    whose admin token file or provider keys folder lies under a tool read path exits, saying why."""
    from agent_runtime.cli.main import _refuse_readable_secrets

    monkeypatch.delenv("AGENT_RUNTIME_SECRETS_DIR", raising=False)
    args = build_parser().parse_args(["shard", "--tool-read-path", "/srv/toolchain"])
    with pytest.raises(SystemExit, match=r"/etc/agent-runtime/admin.token is readable by every agent's shell tool "
                                         r"calls \(it is under /etc"):
        _refuse_readable_secrets("shard", args, Path("/data"), [Path("/etc/agent-runtime/admin.token")])
    with pytest.raises(SystemExit, match="under /srv/toolchain"):
        _refuse_readable_secrets("shard", args, Path("/data"), [Path("/srv/toolchain/keys/admin.token")])
    monkeypatch.setenv("AGENT_RUNTIME_SECRETS_DIR", "/opt/keys")
    with pytest.raises(SystemExit, match="/opt/keys is readable"):
        _refuse_readable_secrets("shard", args, Path("/data"), [Path("/run/agent-runtime/admin-token/admin.token")])
    monkeypatch.setenv("AGENT_RUNTIME_SECRETS_DIR", "/run/agent-runtime/provider-keys")
    _refuse_readable_secrets("shard", args, Path("/data"), [Path("/run/agent-runtime/admin-token/admin.token")])
    # A data dir under /opt: every call's policy drops /opt (it holds the workspace), so its admin.token is safe.
    _refuse_readable_secrets("serve", args, Path("/opt/agents"), [Path("/opt/agents/admin.token")])
