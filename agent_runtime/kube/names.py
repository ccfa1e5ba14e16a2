"""The labels, annotations and close code shards, router, operator and CLI agree on (docs/kubernetes.md).

The API group and version themselves are `agent_runtime.manifest.API_GROUP` / `VERSION` (the
Agent manifest's apiVersion): every name here is derived from that one place.
"""

from agent_runtime.manifest import API_GROUP

SHARD_FIELD = "status.shard"  # selectable field of the Agent CRD: shards watch fieldSelector=status.shard=<shard>
POOL_LABEL = f"{API_GROUP}/pool"
ADDRESS_ANNOTATION = f"{API_GROUP}/address"
DRAINING_ANNOTATION = f"{API_GROUP}/draining"

# WebSocket close code "service restart": the agent moved (or its shard went away); the client
# reconnects, through the router, with its cursor. Sent by a shard releasing an agent and by the router.
CLOSE_MOVED = 1012
