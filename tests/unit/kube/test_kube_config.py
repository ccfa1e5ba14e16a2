"""kubeconfig parsing (agent_runtime.kube.config, used by the shards, the router, agentctl and the
operator): token, files relative to the kubeconfig, inline data, clear errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent_runtime.kube.config import KubeConfigError, load, load_kubeconfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    return path


def test_token_and_relative_ca(tmp_path: Path) -> None:
    conf = load_kubeconfig(write(tmp_path, """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443/", certificate-authority: ca.crt}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: team}}]
current-context: x
"""))
    assert conf.server == "https://127.0.0.1:6443" and conf.bearer() == "abc" and conf.namespace == "team"
    assert conf.ca_file == tmp_path / "ca.crt"


def test_token_file_is_reread_each_time(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("one\n")
    conf = load_kubeconfig(write(tmp_path, """
clusters: [{name: c, cluster: {server: "http://k"}}]
users: [{name: u, user: {tokenFile: token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""))
    assert conf.bearer() == "one" and conf.namespace == "default" and conf.ssl_context() is False
    (tmp_path / "token").write_text("two\n")  # projected service account tokens rotate
    assert conf.bearer() == "two"


def test_inline_certificate_data_is_written_to_a_file(tmp_path: Path) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    conf = load_kubeconfig(write(tmp_path, f"""
clusters: [{{name: c, cluster: {{server: "https://k", certificate-authority-data: {base64.b64encode(pem).decode()}}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""))
    assert conf.ca_file is not None and conf.ca_file.read_bytes() == pem
    conf.ca_file.unlink()


def test_bad_kubeconfigs_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KubeConfigError, match="no context named 'nope'"):
        load_kubeconfig(write(tmp_path, "contexts: []\ncurrent-context: nope\n"))
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        load_kubeconfig(tmp_path / "absent")
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        load_kubeconfig(write(tmp_path, "clusters: [unclosed\n"))
    with pytest.raises(KubeConfigError, match="not a mapping"):
        load_kubeconfig(write(tmp_path, "- a list\n"))
    with pytest.raises(KubeConfigError, match="has no server"):
        load_kubeconfig(write(tmp_path, "clusters: [{name: c, cluster: {}}]\n"
                                        "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="pass --kubeconfig"):
        load(None)  # neither a kubeconfig nor a service account
