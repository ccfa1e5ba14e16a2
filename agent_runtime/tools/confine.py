"""Exec wrapper that puts a tool process into a Landlock domain, then becomes the command.

Run as `python -I -S confine.py RULESET_FD PROGRAM [ARG...]` (see `agent_runtime.tools.sandbox`):
the runtime builds the ruleset (`agent_runtime.tools.landlock.build_ruleset`) and passes its fd;
this process sets `PR_SET_NO_NEW_PRIVS`, drops every capability when it runs as root (see
`drop_capabilities`), calls `landlock_restrict_self(RULESET_FD, 0)`, closes the fd and `execv`s
PROGRAM. The domain is inherited by everything PROGRAM starts.

Why a wrapper and not a `preexec_fn`: a `preexec_fn` makes `subprocess` use `fork()` instead of
`vfork()`, which copies the page tables of the whole runtime on every call (measured: +3 ms at
50 MB resident, +44 ms at 1 GB; docs/benchmarks.md "Shell confinement"), and running Python
between fork and exec in a threaded process is not safe in general. This wrapper costs a fixed
interpreter start instead (~7 ms, independent of the runtime's size).

Kept to the standard library's builtin modules, imported directly (`_ctypes`, not `ctypes`;
`_signal`, not `signal`: 3 ms less start-up each): it runs with `-S` (no site-packages) and must not import `agent_runtime`.
Failing to confine never runs the command: exit 126 with the reason on stderr.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
# The same number on every Linux architecture (the unified syscall table, since Linux 5.13).
SYS_LANDLOCK_RESTRICT_SELF = 446

# Syscalls that act on another process of the same user and that Landlock does not cover (it
# covers ptrace, process_vm_*, pidfd_getfd, kill): allowed only on the caller itself (pid 0).
# The runtime is the call's parent (`$PPID`): `prlimit --pid $PPID --nofile=4` or `--cpu=1`
# would cripple or kill every agent of the shard. Per architecture: (AUDIT_ARCH, syscall numbers).
_SYSCALLS = {
    "x86_64": (0xC000003E, {"prlimit64": 302, "setpriority": 141, "ioprio_set": 251, "sched_setaffinity": 203,
                            "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314,
                            "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
                            "pidfd_open": 434}),
    "aarch64": (0xC00000B7, {"prlimit64": 261, "setpriority": 140, "ioprio_set": 30, "sched_setaffinity": 122,
                             "sched_setscheduler": 119, "sched_setparam": 118, "sched_setattr": 274,
                             "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
                             "pidfd_open": 434}),
}
# Signals: Landlock scopes them from ABI 6 (Linux 6.12) only. Before, `kill -9 $PPID` ended the
# shard and `kill -9 -1` every process of the user. These calls may not name the runtime (the
# wrapper's parent), its process group, or -1; `tkill` (a thread id: the runtime's threads) not at all.
_NOT_THE_RUNTIME = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")
# syscall → (argument index, allowed values), every one must hold. setpriority/ioprio_set: `which`
# is a process or the caller's process group (not PRIO_USER: every process of the user), `who` 0.
_SELF_ONLY: dict[str, tuple[tuple[int, tuple[int, ...]], ...]] = {
    "prlimit64": ((0, (0,)),),
    "setpriority": ((0, (0, 1)), (1, (0,))),  # PRIO_PROCESS, PRIO_PGRP
    "ioprio_set": ((0, (1, 2)), (1, (0,))),  # IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP
    "sched_setaffinity": ((0, (0,)),),
    "sched_setscheduler": ((0, (0,)),),
    "sched_setparam": ((0, (0,)),),
    "sched_setattr": ((0, (0,)),),
}
_X32_BIT = 0x40000000  # x86_64: x32 syscall numbers (the same calls under other numbers)
EXIT_NOT_CONFINED = 126


def restrict(ruleset_fd: int) -> None:
    """no_new_privs, then enter the ruleset's domain (this thread; exec keeps it). OSError on failure."""
    import _ctypes

    class Long(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_long without importing ctypes
        _type_ = "l"

    class Func(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Long

    class Int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int: prctl returns an int
        _type_ = "i"

    class IntFunc(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Int

    class Libc:
        _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # None: the process itself

    prctl = IntFunc(("prctl", Libc))  # type: ignore[arg-type]  # any object with `_handle`
    syscall = Func(("syscall", Libc))  # type: ignore[arg-type]
    zero = Long(0)
    if prctl(Long(PR_SET_NO_NEW_PRIVS), Long(1), zero, zero, zero) != 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    if os.getuid() == 0 or os.geteuid() == 0:
        drop_capabilities(lambda *a: int(prctl(*(Long(x) for x in (*a, 0, 0, 0)[:5]))), _ctypes.get_errno)
    parent = os.getppid()  # the runtime (the cgroup join `sh` exec'd this wrapper: same pid)
    program = seccomp_program(os.uname().machine, (parent, -parent, -os.getpgid(parent)))
    if program is not None:
        size = len(program)

        class Char(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_char
            _type_ = "c"

        class Buffer(_ctypes.Array):  # type: ignore[type-arg]
            _type_ = Char
            _length_ = size

        code = Buffer.from_buffer_copy(program)
        # struct sock_fprog {unsigned short len; struct sock_filter *filter;} (64-bit: padded to 16 bytes)
        fprog = (size // 8).to_bytes(2, sys.byteorder) + bytes(6) + _ctypes.addressof(code).to_bytes(8, sys.byteorder)
        if prctl(Long(PR_SET_SECCOMP), Long(SECCOMP_MODE_FILTER), fprog, zero, zero) != 0:
            err = _ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")
    if syscall(Long(SYS_LANDLOCK_RESTRICT_SELF), Long(ruleset_fd), zero) != 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")


def drop_capabilities(prctl: Callable[..., int], errno: Callable[[], int]) -> None:
    """A runtime running as root (a container with a writable pids cgroup) would hand its tool
    processes every capability it holds: Landlock does not stop `mknod` + reading a device, loading
    a kernel module, `reboot`, changing the clock or the network... The command gets none: the
    bounding set is emptied, the ambient set cleared, and `SECBIT_NOROOT` (locked) keeps uid 0 from
    gaining capabilities at exec. OSError if a capability cannot be dropped (fail closed)."""
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)  # EINVAL before Linux 4.3: nothing to clear
    held = False
    cap = 0
    while (present := prctl(PR_CAPBSET_READ, cap)) >= 0:  # EINVAL past the last capability
        if present:
            held = True
            if prctl(PR_CAPBSET_DROP, cap) != 0:
                err = errno()
                raise OSError(err, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(err)}")
        cap += 1
    if prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED) != 0 and held:
        err = errno()
        raise OSError(err, f"prctl(PR_SET_SECUREBITS): {os.strerror(err)}")


def seccomp_program(machine: str, runtime: tuple[int, ...] = ()) -> bytes | None:
    """The seccomp BPF program (`struct sock_filter[]`, native byte order) that refuses (EPERM) the
    `_SELF_ONLY` syscalls aimed at another process, the `_NOT_THE_RUNTIME` ones aimed at a pid of
    `runtime` (the runtime's pid and its process group as negative pids; -1 always) and `tkill`,
    and any syscall of another ABI than the native one (i386 / x32 numbers would get around it);
    None on an architecture it does not know."""
    if machine not in _SYSCALLS:
        return None
    arch, numbers = _SYSCALLS[machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    # (code, jump-if-true label, jump-if-false label, k); labels are resolved below, None: next.
    code: list[tuple[int, str | None, str | None, int] | str] = [
        (ld, None, None, 4), (jeq, None, "deny", arch),  # seccomp_data.arch
        (ld, None, None, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        code.append((jge, "deny", None, _X32_BIT))
    for name, checks in _SELF_ONLY.items():
        code.append((jeq, None, f"not-{name}", numbers[name]))
        for arg, values in checks:
            code.append((ld, None, None, 16 + 8 * arg))  # the low 32 bits of args[arg] (an int)
            code.extend((jeq, f"{name}-{arg}-ok", None, v) for v in values)
            code.append((ret, None, None, deny))
            code.append(f"{name}-{arg}-ok")
        code.append((ret, None, None, allow))
        code.append(f"not-{name}")
    code.append((jeq, "deny", None, numbers["tkill"]))
    refused = sorted({pid & 0xFFFFFFFF for pid in (*runtime, -1)})  # the low 32 bits of an int argument
    for name in _NOT_THE_RUNTIME:
        code += [(jeq, None, f"not-{name}", numbers[name]), (ld, None, None, 16)]
        code.extend((jeq, "deny", None, pid) for pid in refused)
        code += [(ret, None, None, allow), f"not-{name}"]
    code += [(ret, None, None, allow), "deny", (ret, None, None, deny)]
    labels: dict[str, int] = {}  # label -> index of the instruction that follows it
    pos = 0
    for item in code:
        if isinstance(item, str):
            labels[item] = pos
        else:
            pos += 1
    out = bytearray()
    pos = 0
    for item in code:
        if isinstance(item, str):
            continue
        op, jt, jf, k = item
        out += op.to_bytes(2, sys.byteorder)
        jumps = [labels[j] - pos - 1 if j else 0 for j in (jt, jf)]
        if max(jumps) > 255:  # classic BPF: 8-bit conditional jumps
            raise ValueError("seccomp program too long for its jumps")
        out += bytes(jumps)
        out += k.to_bytes(4, sys.byteorder)
        pos += 1
    return bytes(out)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not argv[1].isdigit():
        sys.stderr.write("usage: confine.py RULESET_FD PROGRAM [ARG...]\n")
        return 2
    fd = int(argv[1])
    try:
        restrict(fd)
    except OSError as exc:
        sys.stderr.write(f"agent-runtime: the command was not run: could not confine it ({exc.strerror})\n")
        return EXIT_NOT_CONFINED
    os.close(fd)
    # The interpreter ignores these at start-up and exec keeps ignored signals: give the command
    # the defaults again, as subprocess's restore_signals did for this process (`yes | head`
    # must end by SIGPIPE, not print "Broken pipe").
    import _signal  # type: ignore[import-not-found]  # not `signal`: its enum import costs 3 ms

    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(_signal, name):
            _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
    try:
        os.execv(argv[2], argv[2:])
    except OSError as exc:
        sys.stderr.write(f"agent-runtime: could not run {argv[2]}: {exc.strerror}\n")
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
