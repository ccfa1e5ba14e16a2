"""kopf registrations: thin, and all async (kopf runs sync handlers in threads; these touch the
controller's loop-owned state). Agents are not watched through kopf (see `agent_operator.__main__`). Each watch handler hands the object to the Controller and returns;
kopf stores nothing on the objects (only `on.event` handlers), so the only writes are the
controller's batched patches. Login reuses the operator's connection settings (agent_runtime.kube.config).
"""

from __future__ import annotations

from typing import Any

import kopf

from agent_operator.controller import Controller
from agent_runtime.kube.config import KubeConfig
from agent_runtime.kube.names import POOL_LABEL
from agent_runtime.manifest import API_GROUP, VERSION


def build_registry(controller: Controller, conn: KubeConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.queueing.idle_timeout = 1.0  # per-object workers; also bounds the shutdown wait
        settings.queueing.exit_timeout = 0.5
        settings.scanning.disabled = True

    @kopf.on.cleanup(registry=registry)
    async def stop_planner(**_: Any) -> None:
        controller.stop()  # else kopf waits 5 s for the planner's tasks as "hung" before exiting

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        token = await conn.bearer_token()  # a token file is re-read off the loop when it changed (rotation)

        def path(p: object) -> str | None:
            return None if p is None else str(p)

        # embedded kubeconfig data goes to kopf as data (kopf keeps its own temporary files for it)
        return kopf.ConnectionInfo(server=conn.server, ca_path=path(conn.ca_file), ca_data=conn.ca_data,
                                   insecure=conn.insecure, token=token, scheme="Bearer" if token else None,
                                   certificate_path=path(conn.cert_file), certificate_data=conn.cert_data,
                                   private_key_path=path(conn.key_file), private_key_data=conn.key_data,
                                   default_namespace=conn.namespace)

    @kopf.on.event(API_GROUP, VERSION, "runtimepools", registry=registry)
    async def pool_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.on_pool(event.get("type"), dict(event["object"]))

    @kopf.on.event("coordination.k8s.io", "v1", "leases", labels={POOL_LABEL: kopf.PRESENT}, registry=registry)
    async def lease_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.on_lease(event.get("type"), dict(event["object"]))

    return registry
