"""A real etcd + kube-apiserver on loopback for the e2e tests and benchmarks (no kubelet).

`build_binaries()` runs scripts/k8s/build.sh (Go module proxy build, cached under
~/.cache/agent-runtime/k8s/<version>/). `Cluster.start(state_dir)` makes throwaway certificates with
openssl, starts etcd and kube-apiserver on free loopback ports, writes a kubeconfig (static admin
token), applies crds/*.yaml and waits until they are established. `Cluster.stop()` stops both by pid.
Used by tests/e2e/conftest.py (session fixture `apiserver`) and by bench/operator.py:

    sys.path.insert(0, str(ROOT / "tests" / "e2e")); from harness import Cluster, build_binaries
    cluster = Cluster.start(build_binaries(), Path(tmp) / "k8s")
    try: cluster.kubectl("get", "crd")
    finally: cluster.stop()
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "k8s" / "build.sh"
CRD_DIR = ROOT / "crds"


class HarnessError(RuntimeError):
    """The local cluster could not be built or started (the message carries the log tail)."""


def build_binaries() -> Path:
    """Build (or reuse) kube-apiserver, kubectl and etcd; return their folder."""
    override = os.environ.get("AGENT_RUNTIME_K8S_BIN")
    if override and (Path(override) / "kube-apiserver").exists():
        return Path(override)
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise HarnessError(f"scripts/k8s/build.sh failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(pki: Path) -> str:
    """CA, apiserver serving cert for 127.0.0.1/localhost, service-account keypair; returns the admin token."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl("req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "3650",
             "-subj", "/CN=agent-runtime-test-ca", "-out", "ca.crt", cwd=pki)
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=pki)
    (pki / "apiserver.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,IP:10.0.0.1\n")
    _openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver", "-out", "apiserver.csr", cwd=pki)
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "3650", "-sha256", "-extfile", "apiserver.ext", "-out", "apiserver.crt", cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    token = secrets.token_hex(16)
    (pki / "tokens.csv").write_text(f"{token},admin,admin-uid,system:masters\n")
    (pki / "admin.token").write_text(token)
    return token


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _stop_pid(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@dataclass
class Cluster:
    """A running etcd + kube-apiserver pair. `.url`, `.kubeconfig`, `.token`, `.ca`, `.kubectl()`."""

    bin_dir: Path
    state_dir: Path
    url: str
    kubeconfig: Path
    token: str
    ca: Path
    start_seconds: float
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls, bin_dir: Path, state_dir: Path, *, apply_crds: bool = True) -> Cluster:
        t0 = time.monotonic()
        state_dir.mkdir(parents=True, exist_ok=True)
        pki = state_dir / "pki"
        token = make_pki(pki)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        procs: list[subprocess.Popen[bytes]] = []
        with (state_dir / "etcd.log").open("wb") as etcd_log:  # the child keeps its own descriptor
            procs.append(subprocess.Popen(
                [str(bin_dir / "etcd"), "--name", "default", "--data-dir", str(state_dir / "etcd-data"),
                 "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                 "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                 "--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--log-level", "warn"],
                stdout=etcd_log, stderr=subprocess.STDOUT, start_new_session=True))
        url = f"https://127.0.0.1:{api_port}"
        cluster = cls(bin_dir, state_dir, url, state_dir / "kubeconfig", token, pki / "ca.crt", 0.0, procs)
        try:
            cluster._wait(lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), procs[0], state_dir / "etcd.log",
                          "etcd", 20)
            with (state_dir / "apiserver.log").open("wb") as api_log:
                procs.append(subprocess.Popen(
                    [str(bin_dir / "kube-apiserver"),
                     "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
                     "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(api_port),
                     "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
                     "--client-ca-file", str(pki / "ca.crt"),
                     "--service-account-key-file", str(pki / "sa.pub"),
                     "--service-account-signing-key-file", str(pki / "sa.key"),
                     "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                     "--token-auth-file", str(pki / "tokens.csv"),
                     "--authorization-mode", "RBAC",
                     "--service-cluster-ip-range", "10.0.0.0/24",
                     "--endpoint-reconciler-type", "none",
                     "--max-requests-inflight", "800", "--max-mutating-requests-inflight", "400",
                     "--cert-dir", str(state_dir / "apiserver-certs")],
                    stdout=api_log, stderr=subprocess.STDOUT, start_new_session=True))
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            cluster._wait(lambda: _http_ok(f"{url}/readyz", token, ctx), procs[1], state_dir / "apiserver.log",
                          "kube-apiserver", 90)
            cluster.kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\n"
                f"clusters:\n- name: local\n  cluster:\n    server: {url}\n    certificate-authority: {pki / 'ca.crt'}\n"
                f"users:\n- name: admin\n  user:\n    token: {token}\n"
                "contexts:\n- name: local\n  context: {cluster: local, user: admin, namespace: default}\n"
                "current-context: local\n")
            if apply_crds:
                cluster.apply_crds()
        except BaseException:
            cluster.stop()
            raise
        cluster.start_seconds = time.monotonic() - t0
        return cluster

    @staticmethod
    def _wait(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                raise HarnessError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
            time.sleep(0.1)
        raise HarnessError(f"{what} not ready after {timeout}s:\n{_tail(log)}")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run our kubectl against this cluster; raises CalledProcessError (with stderr) when `check`."""
        proc = subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                              input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def helm(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the helm built by scripts/k8s/build.sh (rendering only: `helm template`, `helm lint`)."""
        proc = subprocess.run([str(self.bin_dir / "helm"), *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HELM_CACHE_HOME": str(self.state_dir / "helm-cache"),
                                   "HELM_CONFIG_HOME": str(self.state_dir / "helm-config"),
                                   "HELM_DATA_HOME": str(self.state_dir / "helm-data")})
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def apply_crds(self) -> None:
        files = sorted(CRD_DIR.glob("*.yaml"))
        if not files:
            return
        for f in files:
            self.kubectl("apply", "--server-side", "-f", str(f))
        self.kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd", "--all")

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (operator, shards, router) talking to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop_pid(proc)
        self.procs.clear()


def _http_ok(url: str, token: str | None = None, ctx: ssl.SSLContext | None = None) -> bool:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
