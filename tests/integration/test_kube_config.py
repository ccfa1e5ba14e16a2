"""Kubeconfig files and the in-cluster service account: what the shard, router and drain connect with."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.kube import config as kc


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_token_user_with_relative_ca(tmp_path: Path) -> None:
    write(tmp_path / "ca.crt", "x")
    cfg = kc.load_kubeconfig(write(tmp_path / "kubeconfig", """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443/", certificate-authority: ca.crt}
users:
- name: u
  user: {token: abc}
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: team}
current-context: ctx
"""))
    assert cfg.server == "https://127.0.0.1:6443"
    assert await cfg.bearer_token() == "abc" and cfg.ca_file == tmp_path / "ca.crt" and cfg.namespace == "team"


async def test_embedded_data_and_token_file(tmp_path: Path) -> None:
    write(tmp_path / "token", "rotating\n")
    data = base64.b64encode(b"PEM").decode()
    cfg = kc.load_kubeconfig(write(tmp_path / "kubeconfig", f"""
clusters: [{{name: c, cluster: {{server: "http://localhost:8080", certificate-authority-data: {data}}}}}]
users: [{{name: u, user: {{tokenFile: {tmp_path / 'token'}}}}}]
contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]
current-context: ctx
"""))
    assert cfg.ca_file is None and cfg.ca_data == b"PEM"  # kept in memory, no file written
    assert await cfg.bearer_token() == "rotating" and cfg.namespace == "default"
    assert cfg.ssl_context() is False  # plain http: no TLS


def test_missing_context_and_not_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(kc.KubeConfigError, match="current-context"):
        kc.load_kubeconfig(write(tmp_path / "k", "clusters: []\n"))
    with pytest.raises(kc.KubeConfigError, match="no context named 'nope'"):
        kc.load_kubeconfig(write(tmp_path / "k2", "current-context: nope\ncontexts: []\n"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(kc.KubeConfigError, match="--kubeconfig"):
        kc.load(None)


async def test_in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "token", "sa-token")
    write(tmp_path / "ca.crt", "x")
    write(tmp_path / "namespace", "agents")
    monkeypatch.setattr(kc, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    cfg = kc.load(None)
    assert cfg.server == "https://10.0.0.1:443" and await cfg.bearer_token() == "sa-token" and cfg.namespace == "agents"


def test_unreadable_or_malformed_kubeconfigs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(kc.KubeConfigError, match="cannot read kubeconfig"):
        kc.load_kubeconfig(tmp_path / "absent")
    with pytest.raises(kc.KubeConfigError, match="cannot read kubeconfig"):
        kc.load_kubeconfig(write(tmp_path / "k", "clusters: [unclosed\n"))
    with pytest.raises(kc.KubeConfigError, match="not a mapping"):
        kc.load_kubeconfig(write(tmp_path / "k", "- a list\n"))
    with pytest.raises(kc.KubeConfigError, match="has no server"):
        kc.load_kubeconfig(write(tmp_path / "k", "clusters: [{name: c, cluster: {}}]\n"
                                                 "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n"))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def test_embedded_client_certificate_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """client-certificate-data/client-key-data used to be written to never-deleted temp files
    (one pair per load); now they exist only while ssl loads them."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.crt",
             "-days", "1", "-subj", "/CN=client", cwd=pki)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    b64 = {n: base64.b64encode((pki / n).read_bytes()).decode() for n in ("client.crt", "client.key")}
    cfg = kc.load_kubeconfig(write(tmp_path / "kubeconfig", f"""
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:6443", certificate-authority-data: {b64['client.crt']}}}}}]
users: [{{name: u, user: {{client-certificate-data: {b64['client.crt']}, client-key-data: {b64['client.key']}}}}}]
contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]
current-context: ctx
"""))
    assert cfg.cert_file is None and cfg.key_file is None and cfg.cert_data == (pki / "client.crt").read_bytes()
    assert list(temp.iterdir()) == []
    ctx = cfg.ssl_context()
    assert isinstance(ctx, ssl.SSLContext) and ctx.cert_store_stats()["x509_ca"] == 1
    assert list(temp.iterdir()) == []  # the key was in a private folder only while ssl read it
    assert "client.key" not in repr(cfg) and b64["client.key"] not in repr(cfg)


def test_bad_embedded_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(kc.KubeConfigError, match="certificate-authority-data is not valid base64"):
        kc.load_kubeconfig(write(tmp_path / "k", """
clusters: [{name: c, cluster: {server: "https://x", certificate-authority-data: "not base64!"}}]
contexts: [{name: x, context: {cluster: c}}]
current-context: x
"""))


async def test_token_file_is_read_off_the_loop_and_rotation_is_picked_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = write(tmp_path / "token", "first\n")
    cfg = kc.KubeConfig("https://127.0.0.1:6443", token_file=token)
    reads: list[int] = []
    real = kc._read_token  # noqa: SLF001

    def recording(*args: Any) -> tuple[int, str]:
        reads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(kc, "_read_token", recording)
    assert await cfg.bearer_token() == "first"
    assert await cfg.bearer_token() == "first"  # within TOKEN_RECHECK_S: the cached token, no file access
    assert len(reads) == 1 and reads[0] != threading.get_ident()  # read in a worker thread, not on the loop
    write(token, "second\n")
    os.utime(token, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))  # a visible mtime change
    monkeypatch.setattr(kc, "TOKEN_RECHECK_S", 0.0)
    assert await cfg.bearer_token() == "second"  # rotated: picked up
    token.unlink()
    assert await cfg.bearer_token() == "second"  # a failed re-read keeps the last good token
    with pytest.raises(kc.KubeConfigError, match="cannot read token file"):
        await kc.KubeConfig("https://x", token_file=token).bearer_token()
