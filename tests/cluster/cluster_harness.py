"""tests/cluster helpers: the cluster's settings (scripts/cluster/env.sh), a kubectl/helm runner with
the admin kubeconfig, and a polling wait."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))  # stack.RoutedAgent: the WebSocket client of the e2e tests

ENV_KEYS = ("STATE", "CACHE", "NODE_IP", "INGRESS_NODEPORT", "KUBECONFIG_ADMIN", "K8S_VERSION", "PIDS",
            "INGRESS_NAMESPACE", "NODE_NAME")


def cluster_env() -> dict[str, str]:
    out = subprocess.run(["bash", "-c", ". scripts/cluster/env.sh; " + "; ".join(f'echo "{k}=${k}"' for k in ENV_KEYS)],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@dataclass
class Cluster:
    env: dict[str, str]
    bin_dirs: list[Path]
    image: str
    started_here: bool

    @property
    def ingress_url(self) -> str:
        return f"http://{self.env['NODE_IP']}:{self.env['INGRESS_NODEPORT']}"

    def run(self, *argv: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": self.env["KUBECONFIG_ADMIN"],
               "PATH": os.pathsep.join([*map(str, self.bin_dirs), os.environ["PATH"]])}
        p = subprocess.run(list(argv), input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
        return p

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except AssertionError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


