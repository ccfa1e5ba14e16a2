"""Where the apiserver is and how to authenticate: from a kubeconfig file or the in-cluster service
account. Used for both the operator's own async client (kubeapi) and kopf's login, so one source of
truth. Reading the files happens once at startup, before the event loop serves anything.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(ValueError):
    """The kubeconfig is missing, malformed or names a context/cluster/user that is not there."""


@dataclass(frozen=True, slots=True)
class Connection:
    server: str
    token: str | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    namespace: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=self.ca_path)
        if self.cert_path and self.key_path:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _materialize(data_b64: str | None, path: str | None, base: Path, suffix: str) -> str | None:
    """Inline *-data fields are written to a private temp file (ssl wants paths)."""
    if path:
        return str(path if Path(path).is_absolute() else base / path)
    if not data_b64:
        return None
    fd, name = tempfile.mkstemp(prefix="agent-operator-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data_b64))
    return name


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(what) or {})
    raise KubeconfigError(f"kubeconfig has no {what} named {name!r}")


def from_kubeconfig(path: Path, context: str | None = None) -> Connection:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeconfigError(f"kubeconfig {path} has no current-context")
    ctx = _named(doc.get("contexts") or [], ctx_name, "context")
    cluster = _named(doc.get("clusters") or [], ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users") or [], ctx.get("user", ""), "user") if ctx.get("user") else {}
    base = path.resolve().parent
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return Connection(
        server=str(cluster.get("server", "")).rstrip("/"),
        token=token,
        ca_path=_materialize(cluster.get("certificate-authority-data"), cluster.get("certificate-authority"), base,
                             ".crt"),
        cert_path=_materialize(user.get("client-certificate-data"), user.get("client-certificate"), base, ".crt"),
        key_path=_materialize(user.get("client-key-data"), user.get("client-key"), base, ".key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=ctx.get("namespace"),
    )


def in_cluster() -> Connection:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (SA_DIR / "token").exists():
        raise KubeconfigError("not in a cluster (no KUBERNETES_SERVICE_HOST or service account token); "
                              "pass --kubeconfig")
    host = f"[{host}]" if ":" in host else host
    return Connection(server=f"https://{host}:{port}", token=(SA_DIR / "token").read_text().strip(),
                      ca_path=str(SA_DIR / "ca.crt"), namespace=(SA_DIR / "namespace").read_text().strip())


def load(kubeconfig: Path | None) -> Connection:
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    return from_kubeconfig(path) if path else in_cluster()
