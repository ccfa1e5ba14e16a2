"""A small async client for the apiserver (aiohttp): the operator's writes and initial lists.

kopf does the watching; this client does the patches, server-side applies, creates and lists, with
a bounded number of requests in flight. Errors are `ApiError` with the apiserver's status, reason
and message, and whether retrying can help.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from agent_operator.kubeconfig import Connection
from agent_operator.models import FIELD_MANAGER

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

PLURALS = {
    "ConfigMap": ("", "configmaps"), "Service": ("", "services"), "Secret": ("", "secrets"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"), "ServiceAccount": ("", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"), "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "StatefulSet": ("apps/v1", "statefulsets"), "Lease": ("coordination.k8s.io/v1", "leases"),
}


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


def path_for(api_version: str, plural: str, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    if name:
        out += f"/{name}"
    if subresource:
        out += f"/{subresource}"
    return out


def object_path(obj: dict[str, Any], *, named: bool = True) -> str:
    kind = obj["kind"]
    if kind not in PLURALS:
        raise ValueError(f"no plural known for kind {kind}")
    meta = obj["metadata"]
    return path_for(obj["apiVersion"], PLURALS[kind][1], meta.get("namespace"), meta["name"] if named else None)


class KubeApi:
    def __init__(self, conn: Connection, *, concurrency: int = 32, timeout_s: float = 30.0) -> None:
        self.conn = conn
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.conn.ssl_context(), limit=64)
            self._session = aiohttp.ClientSession(connector=connector, headers=self.conn.headers(),
                                                  timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> dict[str, Any]:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._limit:
            try:
                async with self._http().request(method, self.conn.server + path, data=data, headers=headers,
                                                params=params) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise ApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from None
        try:
            doc = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            doc = {"message": raw[:500].decode(errors="replace")}
        if status >= 400:
            raise ApiError(status, str(doc.get("reason", "")), str(doc.get("message", doc)))
        return doc if isinstance(doc, dict) else {}

    async def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        items: list[dict[str, Any]] = []
        while True:
            doc = await self.request("GET", path, params=params)
            kind = str(doc.get("kind", "")).removesuffix("List")
            for item in doc.get("items") or []:
                item.setdefault("kind", kind)
                items.append(item)
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=patch, content_type=MERGE)

    async def json_patch(self, path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=ops, content_type=JSON_PATCH)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager (forced: the operator owns these fields)."""
        return await self.request("PATCH", object_path(obj), body=obj, content_type=APPLY,
                                  params={"fieldManager": FIELD_MANAGER, "force": "true"})

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", object_path(obj, named=False), body=obj)

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)
