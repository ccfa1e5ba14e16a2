"""Where the apiserver is and how to authenticate: a kubeconfig file or the in-cluster service account.

Pure parsing (no sockets); file reads happen once at startup, before the event loop serves anything.
Supported: `server`, `certificate-authority(-data)`, `insecure-skip-tls-verify`, and users with
`token`, `tokenFile` or `client-certificate(-data)` + `client-key(-data)`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(Exception):
    """No usable apiserver configuration."""


@dataclasses.dataclass(frozen=True, slots=True)
class KubeConfig:
    server: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    namespace: str = "default"

    def bearer(self) -> str | None:
        """The current bearer token (a token file is re-read: projected tokens rotate)."""
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx


def _data_file(data: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="kubeconfig-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data))
    return Path(name)


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            inner = item.get(what)
            if isinstance(inner, dict):
                return inner
    raise KubeConfigError(f"kubeconfig has no {what} named {name!r}")


def load_kubeconfig(path: Path, context: str | None = None) -> KubeConfig:
    """The connection a kubeconfig's (current) context names; `KubeConfigError` saying what is wrong."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a mapping")
    base = path.parent
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeConfigError(f"{path}: no current-context")
    ctx = _named(doc.get("contexts") or [], ctx_name, "context")
    cluster = _named(doc.get("clusters") or [], str(ctx.get("cluster", "")), "cluster")
    user = _named(doc.get("users") or [], str(ctx["user"]), "user") if ctx.get("user") else {}
    if not cluster.get("server"):
        raise KubeConfigError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server")

    def rel(p: str | None) -> Path | None:
        return None if p is None else (base / p if not os.path.isabs(p) else Path(p))

    ca = rel(cluster.get("certificate-authority"))
    if cluster.get("certificate-authority-data"):
        ca = _data_file(cluster["certificate-authority-data"], ".crt")
    cert = rel(user.get("client-certificate"))
    if user.get("client-certificate-data"):
        cert = _data_file(user["client-certificate-data"], ".crt")
    key = rel(user.get("client-key"))
    if user.get("client-key-data"):
        key = _data_file(user["client-key-data"], ".key")
    return KubeConfig(
        server=str(cluster["server"]).rstrip("/"),
        token=user.get("token"),
        token_file=rel(user.get("tokenFile")),
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=str(ctx.get("namespace") or "default"),
    )


def in_cluster() -> KubeConfig:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (SA_DIR / "token").exists():
        raise KubeConfigError("not in a cluster (no KUBERNETES_SERVICE_HOST or service account token); pass --kubeconfig")
    if ":" in host:
        host = f"[{host}]"
    ns_file = SA_DIR / "namespace"
    return KubeConfig(
        server=f"https://{host}:{port}",
        token_file=SA_DIR / "token",
        ca_file=SA_DIR / "ca.crt",
        namespace=ns_file.read_text(encoding="utf-8").strip() if ns_file.exists() else "default",
    )


def load(kubeconfig: str | None) -> KubeConfig:
    """`--kubeconfig`, else `$KUBECONFIG`, else in-cluster."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        return load_kubeconfig(Path(path))
    return in_cluster()
