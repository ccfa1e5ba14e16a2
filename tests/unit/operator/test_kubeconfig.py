"""kubeconfig parsing: token, files relative to the kubeconfig, inline data, clear errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent_operator.kubeconfig import KubeconfigError, from_kubeconfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    return path


def test_token_and_relative_ca(tmp_path: Path) -> None:
    conn = from_kubeconfig(write(tmp_path, """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443/", certificate-authority: ca.crt}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: team}}]
current-context: x
"""))
    assert conn.server == "https://127.0.0.1:6443" and conn.token == "abc" and conn.namespace == "team"
    assert conn.ca_path == str(tmp_path / "ca.crt")
    assert conn.headers() == {"Authorization": "Bearer abc"}


def test_inline_certificate_data_is_written_to_a_file(tmp_path: Path) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    conn = from_kubeconfig(write(tmp_path, f"""
clusters: [{{name: c, cluster: {{server: "https://k", certificate-authority-data: {base64.b64encode(pem).decode()}}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""))
    assert conn.ca_path is not None and Path(conn.ca_path).read_bytes() == pem
    Path(conn.ca_path).unlink()


def test_missing_context_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="no context named 'nope'"):
        from_kubeconfig(write(tmp_path, "contexts: []\ncurrent-context: nope\n"))
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        from_kubeconfig(tmp_path / "absent")
