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
# The same number on every Linux architecture (the unified syscall table, since Linux 5.13).
SYS_LANDLOCK_RESTRICT_SELF = 446
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
