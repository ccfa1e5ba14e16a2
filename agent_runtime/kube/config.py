"""Where the apiserver is and how to authenticate: a kubeconfig file or the in-cluster service account.

Pure parsing (no sockets); the kubeconfig is read once at startup, before the event loop serves
anything. Supported: `server`, `certificate-authority(-data)`, `insecure-skip-tls-verify`, and users
with `token`, `tokenFile` or `client-certificate(-data)` + `client-key(-data)`.

Embedded `*-data` stays in memory: `ssl_context()` writes client certificate data to a private
temporary folder only for the moment `load_cert_chain` reads it (Python's ssl takes no in-memory
key), so no key file outlives the call. A token file (projected service-account tokens rotate) is
re-read by `bearer_token()` off the event loop, at most every TOKEN_RECHECK_S and only when its
mtime changed; requests in between use the cached token.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agent_runtime import errors

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_RECHECK_S = 1.0  # how stale a cached token-file token may be (rotation is minutes ahead of expiry)


class KubeConfigError(errors.Error, code="kube_config"):
    """No usable apiserver configuration."""


@dataclasses.dataclass(slots=True)
class TokenFileCache:
    """The last token read from a token file, with the file's mtime and when it was checked."""

    token: str | None = None
    mtime_ns: int | None = None
    checked_at: float = float("-inf")


def _read_token(path: Path, mtime_ns: int | None, token: str | None) -> tuple[int, str]:
    """(mtime, token) of `path`, reading the file only when its mtime differs from `mtime_ns`
    (runs in a worker thread)."""
    current = path.stat().st_mtime_ns
    if current == mtime_ns and token is not None:
        return current, token
    return current, path.read_text(encoding="utf-8").strip()


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
    ca_data: bytes | None = None  # embedded certificate-authority-data (PEM), kept in memory
    cert_data: bytes | None = None  # embedded client-certificate-data (PEM)
    key_data: bytes | None = dataclasses.field(default=None, repr=False)  # embedded client-key-data (PEM)
    _token_cache: TokenFileCache = dataclasses.field(default_factory=TokenFileCache, compare=False, repr=False)

    async def bearer_token(self) -> str | None:
        """The current bearer token. A token file is re-read (projected tokens rotate) in a worker
        thread, at most every TOKEN_RECHECK_S and only when its mtime changed; the event loop never
        touches the file. If a re-read fails, the last token read is kept (the error is raised
        only when there is none yet)."""
        if self.token_file is None:
            return self.token
        cache = self._token_cache
        now = time.monotonic()
        if cache.token is not None and now - cache.checked_at < TOKEN_RECHECK_S:
            return cache.token
        cache.checked_at = now  # concurrent callers keep the cached token meanwhile
        try:
            cache.mtime_ns, cache.token = await asyncio.to_thread(_read_token, self.token_file, cache.mtime_ns,
                                                                  cache.token)
        except OSError as exc:
            if cache.token is None:
                raise KubeConfigError(f"cannot read token file {self.token_file}: {exc}") from None
        return cache.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None,
                                         cadata=self.ca_data.decode("ascii") if self.ca_data else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_data is not None or self.key_data is not None:
            # ssl reads a client key only from a file: a private folder that lives for this call only
            with tempfile.TemporaryDirectory(prefix="kubeconfig-") as tmp:
                cert = _private_file(Path(tmp) / "client.crt", self.cert_data) or self.cert_file
                key = _private_file(Path(tmp) / "client.key", self.key_data) or self.key_file
                if cert is None:
                    raise KubeConfigError("client-key given without client-certificate")
                ctx.load_cert_chain(str(cert), str(key) if key else None)
        elif self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx


def _private_file(path: Path, data: bytes | None) -> Path | None:
    if data is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _decode(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (ValueError, TypeError) as exc:
        raise KubeConfigError(f"{what} is not valid base64: {exc}") from None


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

    def data(where: dict[str, Any], key: str) -> bytes | None:
        raw = where.get(key)
        return _decode(str(raw), f"kubeconfig {path}: {key}") if raw else None

    ca_data, cert_data, key_data = (data(cluster, "certificate-authority-data"),
                                    data(user, "client-certificate-data"), data(user, "client-key-data"))
    return KubeConfig(
        server=str(cluster["server"]).rstrip("/"),
        token=user.get("token"),
        token_file=rel(user.get("tokenFile")),
        ca_file=None if ca_data else rel(cluster.get("certificate-authority")),
        cert_file=None if cert_data else rel(user.get("client-certificate")),
        key_file=None if key_data else rel(user.get("client-key")),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=str(ctx.get("namespace") or "default"),
        ca_data=ca_data, cert_data=cert_data, key_data=key_data,
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
