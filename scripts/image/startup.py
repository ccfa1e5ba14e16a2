"""scripts/image/startup.py: time from `agentctl serve` start to its first `/healthz` 200, inside the
image (run by scripts/image/smoke.sh as the image's user, read-only root, no network). Prints wall
seconds and the CPU seconds the server had used by then (the wall time depends on the machine's load;
the CPU time much less)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    t = time.monotonic()
    p = subprocess.Popen(["agentctl", "serve", "--data-dir", "/tmp/data", "--host", "127.0.0.1", "--port", "8470"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        try:
            urllib.request.urlopen("http://127.0.0.1:8470/healthz", timeout=0.5).read()
            break
        except OSError:
            if p.poll() is not None:
                sys.exit(f"agentctl serve exited {p.returncode}: {p.stderr.read().decode()[-2000:] if p.stderr else ''}")
            time.sleep(0.005)
    wall, cpu = time.monotonic() - t, cpu_s(p.pid)
    p.terminate()
    p.wait()
    print(f"uid={os.getuid()} /healthz 200 after {wall:.3f}s wall, {cpu:.3f}s CPU")


if __name__ == "__main__":
    main()
