"""Linux Landlock for tool processes: what a shell call may touch on the filesystem.

Two halves:

* **pure**: the access rights a kernel's Landlock ABI knows (`handled_fs`, `scoped`) and the
  policy of a call (`policy`: which paths, with which kind of access);
* **IO**: the ABI of the running kernel (`abi_version`, `landlock_available`) and the ruleset of
  one call (`build_ruleset`: `landlock_create_ruleset` + one `landlock_add_rule` per path, raw
  syscalls through ctypes, in the runtime's process). The tool process enters it through the exec
  wrapper `agent_runtime.tools.confine` (`landlock_restrict_self`).

The policy (docs/tools.md "Sandbox"): everything under the workspace; read and execute on the
system folders programs need (`SYSTEM_READ_PATHS`, the Python prefixes in use, plus the shard's
`tool_read_paths`); read and write on a few character devices (`DEVICES`). Everything else — other
agents' folders and logs, the data dir, `/tmp`, `/proc`, `/sys`, `/run`, `/var`, `/root`, the
runtime's home — is denied (EACCES: "Permission denied"). A read path that contains the
workspace is dropped: it would open the sibling agents' folders. The network is not restricted
(Landlock's TCP rules, ABI 4, are not used). With ABI 6 the call is also scoped: it cannot signal
processes outside its own domain (the runtime, other calls) nor connect to their abstract UNIX
sockets.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import functools
import os
import stat
import struct
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "DEVICES",
    "SYSTEM_READ_PATHS",
    "Access",
    "Rule",
    "abi_version",
    "build_ruleset",
    "contains",
    "handled_fs",
    "landlock_available",
    "policy",
    "rule_access",
    "scoped",
]

# Syscall numbers: the same on every Linux architecture (the unified table, Linux 5.13+).
SYS_CREATE_RULESET = 444
SYS_ADD_RULE = 445
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

# Filesystem access rights (linux/landlock.h) and the ABI that introduced them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
ABI1_FS = (1 << 13) - 1
# Rights that apply to a file (a rule on a file may hold only these).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
# Never granted, not even in the workspace: a device node made there (by a runtime running as root
# with CAP_MKNOD) would open the disk, /dev/kmsg, /dev/mem... past every other rule.
DEVICE_NODES = MAKE_CHAR | MAKE_BLOCK
# Scopes (ABI 6).
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

SYSTEM_READ_PATHS: tuple[str, ...] = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
)
DEVICES: tuple[str, ...] = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


class Access(enum.Enum):
    """The kind of access a rule grants."""

    ALL = "all"  # the workspace: every handled right but making device nodes
    READ_EXECUTE = "read_execute"  # system folders: read files, list folders, execute
    DEVICE = "device"  # character devices: read, write, truncate (`> /dev/null`), ioctl


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    path: str
    access: Access


def handled_fs(abi: int) -> int:
    """The filesystem rights a ruleset handles (denies unless a rule grants them) at `abi`."""
    if abi < 1:
        return 0
    mask = ABI1_FS
    if abi >= 2:
        mask |= REFER
    if abi >= 3:
        mask |= TRUNCATE
    if abi >= 5:
        mask |= IOCTL_DEV
    return mask


def scoped(abi: int) -> int:
    """The scopes a ruleset restricts at `abi` (signals, abstract UNIX sockets: ABI 6)."""
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def rule_access(access: Access, abi: int, is_dir: bool) -> int:
    """The rights a rule of kind `access` grants at `abi`, on a folder or a file."""
    handled = handled_fs(abi)
    if access is Access.ALL:
        mask = handled & ~DEVICE_NODES
    elif access is Access.READ_EXECUTE:
        mask = EXECUTE | READ_FILE | READ_DIR
    else:
        mask = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV
    mask &= handled
    return mask if is_dir else mask & FILE_RIGHTS


def contains(outer: str, inner: str) -> bool:
    """Whether resolved path `inner` is `outer` or lies under it."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def policy(workspace: str, read_paths: Iterable[str], devices: Iterable[str] = DEVICES) -> list[Rule]:
    """The rules of a call: `workspace` (all rights), `read_paths` (read + execute), `devices`.
    Paths are absolute and resolved (no symlinks); duplicates are dropped, and so is any read
    path that contains the workspace (it would grant the sibling agents' folders)."""
    rules = [Rule(workspace, Access.ALL)]
    seen = {workspace}
    for path in read_paths:
        if path in seen or contains(path, workspace):
            continue
        seen.add(path)
        rules.append(Rule(path, Access.READ_EXECUTE))
    for path in devices:
        if path not in seen:
            seen.add(path)
            rules.append(Rule(path, Access.DEVICE))
    return rules


def readable_by_tools(path: str | os.PathLike[str], read_paths: Iterable[str]) -> str | None:
    """The read path under which tool processes could read `path` (a secret of the runtime: its
    admin token file, its provider keys folder), or None. Both sides resolved (no symlinks)."""
    target = os.path.realpath(path)
    return next((p for p in read_paths if contains(p, target)), None)


def default_read_paths(extra: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """System folders, the Python prefixes in use (so `python3` scripts run), then `extra`;
    resolved (a rule binds to what a path names: `/bin` may be `/usr/bin`). The system part is
    resolved once per process (every shell call asks)."""
    return [*_system_read_paths(), *(os.path.realpath(p) for p in extra)]


@functools.cache
def _system_read_paths() -> tuple[str, ...]:
    return tuple(os.path.realpath(p) for p in (*SYSTEM_READ_PATHS, sys.prefix, sys.base_prefix))


# --------------------------------------------------------------------------------------------
# IO: raw syscalls


_libc = ctypes.CDLL(None, use_errno=True)
syscall = _libc.syscall  # raw syscalls (errno kept); also `beneath`'s openat2
syscall.restype = ctypes.c_long
_abi: int | None = None
_why_not = ""


def abi_version() -> int:
    """The Landlock ABI of the running kernel (0: none; checked once per process)."""
    global _abi, _why_not
    if _abi is None:
        if not sys.platform.startswith("linux"):
            _abi, _why_not = 0, f"not Linux ({sys.platform})"
            return _abi
        result = syscall(ctypes.c_long(SYS_CREATE_RULESET), None, ctypes.c_long(0), ctypes.c_long(CREATE_RULESET_VERSION))
        if result < 0:
            err = ctypes.get_errno()
            _abi = 0
            _why_not = {
                38: "the kernel has no Landlock (ENOSYS: older than 5.13, or a seccomp filter blocks it)",
                95: "Landlock is not enabled in this kernel (EOPNOTSUPP: add `landlock` to the lsm= boot parameter)",
            }.get(err, f"landlock_create_ruleset failed: {os.strerror(err)}")
        else:
            _abi = int(result)
    return _abi


def landlock_available() -> bool:
    """Whether tool processes can be confined here (checked once per process)."""
    return abi_version() >= 1


def unavailable_reason() -> str:
    """Why `landlock_available()` is False ("" when it is True)."""
    abi_version()
    return _why_not


def build_ruleset(rules: Sequence[Rule], abi: int) -> int:
    """A ruleset fd (close-on-exec) holding `rules`; read paths and devices that cannot be opened
    (missing) are skipped: they grant nothing. The caller passes the fd to the exec wrapper and
    closes it. OSError if the workspace cannot be opened or the kernel refuses a rule."""
    fs = handled_fs(abi)
    scope = scoped(abi)
    if abi >= 6:
        attr = struct.pack("=QQQ", fs, 0, scope)
    elif abi >= 4:
        attr = struct.pack("=QQ", fs, 0)
    else:
        attr = struct.pack("=Q", fs)
    fd = _check(syscall(ctypes.c_long(SYS_CREATE_RULESET), attr, ctypes.c_size_t(len(attr)), ctypes.c_long(0)), "landlock_create_ruleset")
    try:
        os.set_inheritable(fd, False)
        for rule in rules:
            _add(fd, rule, abi)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _add(ruleset: int, rule: Rule, abi: int) -> None:
    try:
        parent = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        if rule.access is Access.ALL:  # the workspace: without it the call cannot work
            raise
        return  # a read path or device that is missing (or unreachable) grants nothing
    try:
        is_dir = stat.S_ISDIR(os.fstat(parent).st_mode)
        access = rule_access(rule.access, abi, is_dir)
        if not access:
            return
        attr = struct.pack("=Qi", access, parent)
        _check(syscall(ctypes.c_long(SYS_ADD_RULE), ctypes.c_long(ruleset), ctypes.c_long(RULE_PATH_BENEATH), attr, ctypes.c_long(0)),
               f"landlock_add_rule({rule.path})")
    finally:
        os.close(parent)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return int(result)
