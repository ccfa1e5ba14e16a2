"""The pure half of the Landlock confinement: which rights a kernel's ABI handles, what each kind of
rule grants, the policy's path list; and how the CLI flags reach the actor's config."""

from __future__ import annotations

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
