"""The API group, labels and annotations shards, router, operator and CLI agree on (see docs/kubernetes.md)."""

GROUP = "agentruntime.dev"
VERSION = "v1alpha1"
SHARD_FIELD = "status.shard"  # selectable field of the Agent CRD: shards watch fieldSelector=status.shard=<shard>
POOL_LABEL = f"{GROUP}/pool"
ADDRESS_ANNOTATION = f"{GROUP}/address"
DRAINING_ANNOTATION = f"{GROUP}/draining"
