"""A small async Kubernetes API client over aiohttp: get/list/watch, create/replace (optimistic
concurrency through `metadata.resourceVersion`), JSON merge-patch (also on `/status`), delete.

What the shard, router, operator and `agentctl drain` need (plus JSON patch and server-side apply
for the operator). Errors are typed (`NotFound`, `Conflict`,
`Gone`, `ApiError`). `Reflector` keeps a local copy of a collection: list, then watch from the
list's resourceVersion with bookmarks, re-list on 410 Gone, re-watch after a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from agent_runtime import errors
from agent_runtime.backoff import Backoff
from agent_runtime.kube.config import KubeConfig
from agent_runtime.manifest import API_VERSION

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
JsonPatch = list[dict[str, Any]]  # RFC 6902 operations
WATCH_TIMEOUT_S = 290  # the server ends a watch after this; we re-watch from the last resourceVersion
WATCH_RETRY = Backoff(first_s=0.2, cap_s=5.0)  # a failed list/watch: 0.2 s doubling to 5 s, jittered


def agents_path(namespace: str | None = None, name: str | None = None, status: bool = False) -> str:
    base = f"/apis/{API_VERSION}"
    path = f"{base}/namespaces/{namespace}/agents" if namespace else f"{base}/agents"
    if name is not None:
        path += f"/{name}"
        if status:
            path += "/status"
    return path


def leases_path(namespace: str | None = None, name: str | None = None) -> str:
    base = "/apis/coordination.k8s.io/v1"
    path = f"{base}/namespaces/{namespace}/leases" if namespace else f"{base}/leases"
    return path if name is None else f"{path}/{name}"


class ApiError(errors.Error, code="kube_api"):
    """The apiserver refused a request. `status` is the apiserver's HTTP status, `reason` the Status
    reason; `retryable`: whether the same request may succeed later (conflict, throttling, server trouble)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retryable = status in (409, 429) or status >= 500


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: the object changed since the resourceVersion we sent (or already exists on create)."""


class Gone(ApiError):
    """410: the resourceVersion is too old to watch from; list again."""


def _error(status: int, body: bytes) -> ApiError:
    try:
        doc = orjson.loads(body)
        reason, message = str(doc.get("reason", "")), str(doc.get("message", ""))
    except orjson.JSONDecodeError:
        reason, message = "", body[:500].decode(errors="replace")
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return cls(status, reason, message)


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict[str, Any]


class KubeClient:
    """Use as `async with KubeClient(config) as kube:`. `connections`: the most open at once; a
    running watch holds one for as long as it runs, so a client that keeps N watches needs N more
    than its requests (the operator: one Agent watch per namespace)."""

    def __init__(self, config: KubeConfig, connections: int = 64) -> None:
        self.config = config
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0  # counted per verb name for the bench
        self.by_verb: dict[str, int] = {}

    async def __aenter__(self) -> KubeClient:
        ssl_ctx = self.config.ssl_context()
        connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=self.connections)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = await self.config.bearer_token()  # a token file is re-read off the loop, on change
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        assert self._session is not None, "use `async with KubeClient(...)`"
        self.requests += 1
        self.by_verb[method] = self.by_verb.get(method, 0) + 1
        data = None if body is None else orjson.dumps(body)
        headers = await self._headers(content_type if data is not None else None)
        async with self._session.request(
            method, self.config.server + path, params=params, data=data, headers=headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise _error(resp.status, raw)
            out: dict[str, Any] = orjson.loads(raw) if raw else {}
            return out

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def list(self, path: str, label_selector: str | None = None,
                   field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """All items (following `continue`) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            doc = await self.request("GET", path, params=params)
            items.extend(doc.get("items") or [])
            meta = doc.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                return items, str(meta.get("resourceVersion", ""))
            params["continue"] = cont

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT; `Conflict` if `body.metadata.resourceVersion` is not the current one."""
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def json_patch(self, path: str, ops: JsonPatch) -> dict[str, Any]:
        """RFC 6902 patch (e.g. a `test` + `remove` of one finalizer); 422 when a `test` fails."""
        return await self.request("PATCH", path, body=ops, content_type="application/json-patch+json")

    async def apply(self, path: str, obj: dict[str, Any], field_manager: str, force: bool = True) -> dict[str, Any]:
        """Server-side apply of `obj` (at its own `path`) as `field_manager`."""
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return await self.request("PATCH", path, params=params, body=obj, content_type="application/apply-patch+yaml")

    async def delete(self, path: str) -> dict[str, Any]:
        return await self.request("DELETE", path)

    async def watch(self, path: str, resource_version: str, label_selector: str | None = None,
                    timeout_s: int = WATCH_TIMEOUT_S, field_selector: str | None = None) -> AsyncIterator[WatchEvent]:
        """Events after `resource_version` until the server ends the watch. `Gone` on 410. With a
        selector, an object that stops matching arrives as DELETED (its last matching state)."""
        assert self._session is not None
        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_s)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        self.requests += 1
        self.by_verb["WATCH"] = self.by_verb.get("WATCH", 0) + 1
        headers = await self._headers()
        async with self._session.get(
            self.config.server + path, params=params, headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_s + 30),
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.read())
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while (nl := buffer.find(b"\n")) >= 0:
                    line, buffer = buffer[:nl], buffer[nl + 1:]
                    if not line.strip():
                        continue
                    doc = orjson.loads(line)
                    obj = doc.get("object") or {}
                    if doc.get("type") == "ERROR":
                        raise _error(int(obj.get("code", 500)), orjson.dumps(obj))
                    yield WatchEvent(str(doc.get("type")), obj)


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


Handler = Callable[[str, dict[str, Any]], None]


class Reflector:
    """A local copy of one collection, kept current by list + watch. `handler(type, obj)` is
    called (synchronously, on the loop) for every change: ADDED, MODIFIED, DELETED — including
    the deletions and changes a re-list discovers. `synced` is set after the first list.

    `keep_objects=False` keeps only each object's resourceVersion (enough to find what a re-list
    changed), for a handler that keeps its own view: the operator watches every Agent of the
    cluster and need not hold a second copy of each. A deletion found by a re-list then reaches
    the handler as the object's identity only (metadata namespace, name, uid, resourceVersion).

    `fatal_before_sync=True`: a refusal of the first list that waiting will not change (an ApiError
    that is not `retryable`: 401, 403, 404...) is raised instead of retried, for a caller that
    starts nothing before `synced` (the operator): it stops with the apiserver's reason."""

    def __init__(self, client: KubeClient, path: str, handler: Handler, label_selector: str | None = None,
                 field_selector: str | None = None, keep_objects: bool = True,
                 fatal_before_sync: bool = False) -> None:
        self.client = client
        self.path = path
        self.handler = handler
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.keep_objects = keep_objects
        self.fatal_before_sync = fatal_before_sync
        self.store: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.relists = 0

    def _kept(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.keep_objects:
            return obj
        meta = obj.get("metadata") or {}
        return {"metadata": {k: meta[k] for k in ("namespace", "name", "uid", "resourceVersion") if k in meta}}

    def _apply_list(self, items: list[dict[str, Any]]) -> None:
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self.store if k not in fresh]:
            self.handler("DELETED", self.store.pop(key))
        for key, obj in fresh.items():
            kind = "MODIFIED" if key in self.store else "ADDED"
            old = self.store.get(key)
            self.store[key] = self._kept(obj)
            if old is None or (old.get("metadata") or {}).get("resourceVersion") != (obj.get("metadata") or {}).get("resourceVersion"):
                self.handler(kind, obj)

    async def run(self) -> None:
        """Forever (until cancelled)."""
        failures = 0  # since the last watch the server closed normally
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    items, rv = await self.client.list(self.path, self.label_selector, self.field_selector)
                    self.relists += 1
                    self._apply_list(items)
                    self.synced.set()
                async for ev in self.client.watch(self.path, rv, self.label_selector,
                                                  field_selector=self.field_selector):
                    new_rv = (ev.object.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = str(new_rv)
                    if ev.type == "BOOKMARK":
                        continue
                    key = object_key(ev.object)
                    if ev.type == "DELETED":
                        self.store.pop(key, None)
                    else:
                        self.store[key] = self._kept(ev.object)
                    self.handler(ev.type, ev.object)
                failures = 0  # the server closed the watch normally: continue from rv
            except Gone:
                rv = None  # too old: list again
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, ApiError, OSError, TimeoutError, ValueError) as exc:
                if (self.fatal_before_sync and not self.synced.is_set() and isinstance(exc, ApiError)
                        and not exc.retryable):
                    raise
                log.warning("watch %s: %s; retrying in %.1fs", self.path, exc, WATCH_RETRY.base(failures))
                await asyncio.sleep(WATCH_RETRY.delay(failures))
                failures += 1


@contextlib.asynccontextmanager
async def connect(kubeconfig: str | None, watches: int = 0) -> AsyncIterator[KubeClient]:
    """A client from a kubeconfig (None: $KUBECONFIG, else in-cluster); `watches`: how many watches
    it will hold open all along — each keeps a connection, on top of the 64 for other requests."""
    from agent_runtime.kube.config import load

    config = await asyncio.to_thread(load, kubeconfig)
    async with KubeClient(config, connections=64 + watches) as client:
        yield client
