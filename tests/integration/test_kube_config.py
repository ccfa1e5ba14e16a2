"""Kubeconfig files and the in-cluster service account: what the shard, router and drain connect with."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent_runtime.kube import config as kc


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_token_user_with_relative_ca(tmp_path: Path) -> None:
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
    assert cfg.bearer() == "abc" and cfg.ca_file == tmp_path / "ca.crt" and cfg.namespace == "team"


def test_embedded_data_and_token_file(tmp_path: Path) -> None:
    write(tmp_path / "token", "rotating\n")
    data = base64.b64encode(b"PEM").decode()
    cfg = kc.load_kubeconfig(write(tmp_path / "kubeconfig", f"""
clusters: [{{name: c, cluster: {{server: "http://localhost:8080", certificate-authority-data: {data}}}}}]
users: [{{name: u, user: {{tokenFile: {tmp_path / 'token'}}}}}]
contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]
current-context: ctx
"""))
    assert cfg.ca_file is not None and cfg.ca_file.read_bytes() == b"PEM"
    assert cfg.bearer() == "rotating" and cfg.namespace == "default"
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


def test_in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "token", "sa-token")
    write(tmp_path / "ca.crt", "x")
    write(tmp_path / "namespace", "agents")
    monkeypatch.setattr(kc, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    cfg = kc.load(None)
    assert cfg.server == "https://10.0.0.1:443" and cfg.bearer() == "sa-token" and cfg.namespace == "agents"


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
