"""The operator's pydantic models: RuntimePool spec/status and Agent status (the Agent spec is
`agent_runtime.manifest.AgentSpec`, shared with the standalone runtime). `crdgen` turns them into
the CRDs under crds/; the handlers parse objects with them. camelCase on the wire.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from agent_runtime.manifest import API_GROUP

# The API group/version and the labels shared with the shards are in agent_runtime.manifest and
# agent_runtime.kube.names; these are the operator's own.
FINALIZER = f"{API_GROUP}/finalizer"
FIELD_MANAGER = "agent-operator"

AgentPhase = Literal["Pending", "Placed", "Running", "Idle", "WaitingApproval", "Failed"]
# Phases the shard owns: the operator never overwrites them while the agent stays on its shard.
SHARD_PHASES = frozenset({"Running", "Idle", "WaitingApproval"})


def _url_rule() -> JsonDict:
    return {"x-kubernetes-validations": [{"rule": "isURL(self) && url(self).getScheme() in ['http', 'https']",
                                          "message": "must be an http(s) URL"}]}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ProviderEndpoints(_Model):
    """Base URLs the shards use for each model provider (written into the pool's ConfigMap)."""

    anthropic: str | None = Field(default=None, max_length=2048, json_schema_extra=_url_rule())
    openai: str | None = Field(default=None, max_length=2048, json_schema_extra=_url_rule())
    gemini: str | None = Field(default=None, max_length=2048, json_schema_extra=_url_rule())


class Storage(_Model):
    """The pool's shared data volume (one ReadWriteMany claim mounted by every shard)."""

    size: str = Field(default="10Gi", max_length=64, json_schema_extra={
        "x-kubernetes-validations": [{"rule": "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
                                      "message": "must be a positive quantity such as 10Gi"}]})
    storage_class_name: str | None = Field(default=None, max_length=253)
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        default="ReadWriteMany", description="ReadWriteOnce only works when every shard runs on one node.")


class Resources(_Model):
    requests: dict[str, str] = Field(default_factory=dict, description="Per shard, e.g. {cpu: '2', memory: 4Gi}.")
    limits: dict[str, str] = Field(default_factory=dict)


class ToolSandbox(_Model):
    """How the shards confine agents' shell tool processes (Linux Landlock, docs/tools.md "Sandbox"):
    each call may touch its agent's workspace, read the system folders and `readPaths`, nothing else
    (not the other agents' logs on the shared volume, not the pod's tokens)."""

    confinement_required: bool = Field(default=True, description=(
        "Refuse shell tool calls on a node whose kernel cannot confine them (Landlock needs Linux 5.13+ "
        "and a container runtime whose seccomp profile allows it). false: run them unconfined there "
        "(logged; the shard's agent_runtime_tool_confinement_abi metric is 0)."))
    read_paths: list[Annotated[str, StringConstraints(pattern="^/", max_length=4096)]] = Field(
        default_factory=list, max_length=32, description=(
            "Extra absolute paths tool processes may read and execute (e.g. a toolchain folder). A path "
            "that contains the data volume is ignored (it would open every agent's folder)."))


class RuntimePoolSpec(_Model):
    """A set of shard processes (one StatefulSet pod each) that agents of a region are placed on."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": "self.shards * self.capacityPerShard <= 1000000",
             "message": "shards * capacityPerShard must be at most 1,000,000"},
        ]})

    region: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                        description="Agents whose spec.model.region equals this are placed here.")
    providers: ProviderEndpoints = ProviderEndpoints()
    provider_keys_secret: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="A Secret in the pool's namespace whose keys are the API key variables "
                    "(ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY); mounted read-only into the shards.")
    shards: int = Field(default=1, ge=0, le=512, description="Shard processes (StatefulSet replicas).")
    capacity_per_shard: int = Field(default=500, ge=1, le=100_000, description="Most agents placed on one shard.")
    image: str = Field(default="ghcr.io/agent-runtime/agent-runtime:0.1.0", min_length=1, max_length=512)
    port: int = Field(default=8470, ge=1024, le=65535, description="Shard HTTP/WebSocket port.")
    storage: Storage = Storage()
    resources: Resources = Resources()
    node_selector: dict[str, str] = Field(default_factory=dict)
    affinity: dict[str, Any] = Field(default_factory=dict, description="A core/v1 Affinity, copied to the pods.")
    lease_duration_seconds: int = Field(default=15, ge=3, le=600,
                                        description="Shard heartbeat Lease duration; renewed every third of it.")
    tool_sandbox: ToolSandbox = ToolSandbox()


class Condition(_Model):
    type: str = Field(min_length=1, max_length=64)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", max_length=128)
    message: str = Field(default="", max_length=4096)
    last_transition_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})


class RuntimePoolStatus(_Model):
    ready_shards: int = Field(default=0, ge=0, description="Shards with a fresh, non-draining Lease.")
    agents: int = Field(default=0, ge=0, description="Agents placed on this pool's shards.")
    conditions: list[Condition] = Field(default_factory=list)


class TokenCounts(_Model):
    input: int = Field(default=0, ge=0)
    output: int = Field(default=0, ge=0)
    cache_read: int = Field(default=0, ge=0)
    cache_write: int = Field(default=0, ge=0)


class AgentStatus(_Model):
    """Placement (operator: phase Pending/Placed/Failed, shard, pool, condition Placed) and activity (shard:
    phase Running/Idle/WaitingApproval, turns, tokens, cachedShare, lastActivity, condition Ready)."""

    phase: AgentPhase = "Pending"
    shard: str | None = Field(default=None, max_length=253)
    pool: str | None = Field(default=None, max_length=253, description=(
        "The RuntimePool the agent was first placed in; its log lives on that pool's volume, so the "
        "operator keeps it there even if spec.runtimePool or spec.model.region later asks for another."))
    turns: int = Field(default=0, ge=0)
    tokens: TokenCounts = TokenCounts()
    cached_share: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of prompt tokens read from cache.")
    compressions: int = Field(default=0, ge=0, description="Frozen chunks made by compression (docs/compression.md).")
    cost_units: int = Field(default=0, ge=0, description=(
        "Estimated cost of the agent's model calls in input-token units at the provider's list-price multipliers."))
    last_activity: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    conditions: list[Condition] = Field(default_factory=list)
