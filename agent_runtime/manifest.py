"""`Agent` manifests: the same apiVersion/kind/metadata/spec shape as the Kubernetes CRD.

The standalone server loads them from a folder or the HTTP API; the operator (later) generates the
CRD schema from these models. Field names are camelCase on the wire, snake_case in Python. A bad
manifest raises `ManifestError` whose message names the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from agent_runtime import errors

# The API group and version of Agents and RuntimePools: written once, here, as the type a manifest's
# apiVersion must have; the shards, router, operator and CRD generator take these names from here.
ApiVersion = Literal["agentruntime.dev/v1alpha1"]
API_VERSION: str = get_args(ApiVersion)[0]  # "<group>/<version>"
API_GROUP, VERSION = API_VERSION.split("/")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
BUILTIN_TOOLS = ("shell", "read_file", "write_file", "list_dir", "edit_file")
DEFAULT_TOOLS = ("shell", "read_file", "write_file", "list_dir")


class ManifestError(errors.Error, ValueError, code="invalid_manifest"):
    """An invalid manifest. `field` is the dotted path of the first bad field (or "")."""

    def __init__(self, message: str, field: str = "", source: str = "") -> None:
        where = f"{source}: " if source else ""
        at = f"{field}: " if field else ""
        super().__init__(f"{where}{at}{message}")
        self.field = field
        self.source = source

    def extra(self) -> dict[str, Any]:
        return {"field": self.field}  # always: "" when no one field is at fault


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ModelRef(_Model):
    provider: Literal["simulated", "anthropic", "openai", "openai-responses", "gemini"] = "simulated"
    name: str = Field(default="sim-coder-1", min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=63)
    thinking_budget: int | None = Field(
        default=None, ge=1024, le=200_000,
        description="Extended thinking / reasoning on, with this many tokens (Anthropic budget_tokens, Gemini "
        "thinkingBudget, OpenAI Responses reasoning effort); unset: off.",
    )


class Limits(_Model):
    max_turns: int = Field(default=24, ge=1, le=1000, description="Model calls allowed per user message.")
    token_budget: int = Field(
        default=200_000, ge=256, description="Most prompt tokens one model call may carry."
    )
    max_output_tokens: int = Field(default=4096, ge=1, le=200_000)
    tool_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    tool_output_cap: int = Field(default=64_000, ge=256, le=16_000_000)
    max_running_tools: int = Field(
        default=8, ge=1, le=256, description="Tool calls of this agent running at once (the shard has its own limit)."
    )
    tool_memory_mb: int = Field(default=1024, ge=16, le=1_048_576, description="Address-space limit of a tool process (MiB).")
    tool_cpu_s: int = Field(default=60, ge=1, le=86_400, description="CPU-time limit of a tool process (seconds).")
    tool_open_files: int = Field(default=256, ge=16, le=65_536, description="Open-file limit of a tool process.")
    tool_processes: int = Field(default=64, ge=1, le=4096, description="Processes a tool call may have at once.")


class AutonomyRule(_Model):
    """One rule of the autonomy policy. A call matches when every given matcher matches."""

    action: Literal["deny", "ask", "allow"]
    tool: str = Field(default="*", min_length=1, max_length=200, description="Glob on the tool name (fnmatch).")
    arguments: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Argument name -> glob on its value (strings as they are, other values as compact JSON; "
            "`path` values are normalised first). `*` also matches `/`. Every listed argument must match."
        ),
    )
    read_only: bool | None = Field(default=None, description="Match only tools with (true) / without (false) the read-only hint.")


class Autonomy(_Model):
    """What an agent may do without a human: rules evaluated deny, then ask, then allow."""

    rules: tuple[AutonomyRule, ...] = Field(default=(), max_length=200)
    default_action: Literal["deny", "ask", "allow"] = Field(
        default="allow", description="The decision when no rule matches."
    )
    approval_timeout_s: float = Field(default=300.0, gt=0, le=86_400, description="How long an `ask` waits for an operator.")
    approval_timeout_decision: Literal["allow", "deny"] = Field(
        default="deny", description="The decision recorded when nobody answers in time."
    )
    streaming_start: Literal["readOnlyOrIdempotent", "readOnly", "off"] = Field(
        default="readOnly",
        description=(
            "Which allowed calls start while the model is still streaming (others wait for the tool_use stop). "
            "readOnly (default): no side effect before the stop reason; readOnlyOrIdempotent: idempotent calls "
            "with side effects too (they survive a max_tokens/content-filter stop and re-run on a retry); off."
        ),
    )


class Compression(_Model):
    """Frozen-prefix compression (docs/compression.md): when the live tail of the conversation passes
    `tailBudget` tokens, its oldest part is folded into a new frozen chunk appended after the earlier
    ones; the prompt's prefix stays byte-identical so the provider serves it from its cache."""

    enabled: bool = Field(default=True, description="Fold the oldest part of the live tail into frozen chunks.")
    tail_budget: int = Field(
        default=32_000, ge=512, le=1_000_000,
        description="Tokens the live tail (the messages after the last frozen chunk) may hold before a fold.",
    )
    keep_tail: int = Field(
        default=12_000, ge=0, le=1_000_000,
        description="Tokens a fold leaves live (the newest messages); must be below tailBudget.",
    )
    folded_output_tokens: int = Field(
        default=200, ge=16, le=100_000,
        description="A tool output longer than this many tokens is folded to its head and tail with a note.",
    )
    frozen_budget: int = Field(
        default=48_000, ge=1024, le=1_000_000,
        description=(
            "Tokens the frozen chunks may hold together; past it they are consolidated into one archive chunk "
            "(a digest of the decisions, tool outputs left out): one cache miss every many turns instead of a "
            "prompt that grows without end."
        ),
    )

    @model_validator(mode="after")
    def _keep_below_budget(self) -> Compression:
        if self.keep_tail >= self.tail_budget:
            raise ValueError(f"keepTail ({self.keep_tail}) must be below tailBudget ({self.tail_budget})")
        return self


class AgentSpec(_Model):
    model: ModelRef = ModelRef()
    system_prompt: str = Field(default="You are a careful coding agent.", max_length=200_000)
    tools: tuple[str, ...] = DEFAULT_TOOLS
    limits: Limits = Limits()
    autonomy: Autonomy = Autonomy()
    compression: Compression = Compression()
    runtime_pool: str | None = Field(default=None, max_length=63)
    on_delete: Literal["archive", "remove"] = Field(
        default="archive", description="What deleting the agent does with its log folder (Kubernetes finalizer)."
    )

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in v if t not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(f"unknown tool(s) {unknown}; available: {list(BUILTIN_TOOLS)}")
        if len(set(v)) != len(v):
            raise ValueError("tools must not repeat")
        return v

    def tail_budget(self) -> tuple[int, int]:
        """(fold when the live tail passes this many tokens, keep this many live after a fold): the
        spec's compression budget, scaled down to half of limits.tokenBudget when that is smaller (a
        fold must leave room in the prompt for the frozen chunks and the next turn)."""
        c = self.compression
        budget = min(c.tail_budget, self.limits.token_budget // 2)
        return budget, min(c.keep_tail, budget * c.keep_tail // c.tail_budget)

    def frozen_budget(self) -> int:
        """Tokens the frozen chunks may hold before they are consolidated: the spec's, at most a
        third of limits.tokenBudget (chunks + tail + the next turn must fit in one prompt)."""
        return min(self.compression.frozen_budget, self.limits.token_budget // 3)


# What deleting an Agent does with its log folder when its spec does not say: stored Agent objects
# carry no defaults (the CRD has none), so the operator and the shards read it from here.
DEFAULT_ON_DELETE: str = str(AgentSpec.model_fields["on_delete"].default)
ON_DELETE_MODES: tuple[str, ...] = get_args(AgentSpec.model_fields["on_delete"].annotation)


class Metadata(_Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError(f"{v!r} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)")
        return v


class AgentManifest(_Model):
    api_version: ApiVersion = Field(alias="apiVersion")
    kind: Literal["Agent"]
    metadata: Metadata
    spec: AgentSpec = AgentSpec()

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_manifest(data: Any, source: str = "") -> AgentManifest:
    """Validate one manifest document; raise `ManifestError` naming the bad field."""
    if not isinstance(data, dict):
        raise ManifestError("a manifest must be a mapping with apiVersion, kind, metadata, spec", source=source)
    try:
        return AgentManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ManifestError(first["msg"], field=_field_path(tuple(first["loc"])), source=source) from None


def manifest_from_object(obj: Mapping[str, Any]) -> AgentManifest:
    """The manifest of a Kubernetes Agent object, as a shard runs it (spec fields this runtime does
    not know are dropped); `ManifestError` naming the bad field. The operator validates with this too."""
    meta = obj.get("metadata") or {}
    known = {f.alias or n for n, f in AgentSpec.model_fields.items()} | set(AgentSpec.model_fields)
    spec = {k: v for k, v in (obj.get("spec") or {}).items() if k in known}
    return parse_manifest({"apiVersion": API_VERSION, "kind": "Agent",
                           "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                                        "labels": meta.get("labels") or {}},
                           "spec": spec}, source=f"{meta.get('namespace')}/{meta.get('name')}")


def load_manifests_text(text: str, source: str = "") -> list[AgentManifest]:
    """All `Agent` documents of a YAML stream."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}", source=source) from None
    return [parse_manifest(d, source=source) for d in docs]


def load_manifest_dir(folder: Path) -> list[AgentManifest]:
    """Every manifest in `*.yaml`/`*.yml` files of `folder`, sorted by file name."""
    out: list[AgentManifest] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        out.extend(load_manifests_text(path.read_text(encoding="utf-8"), source=str(path)))
    return out


def make_manifest(name: str, namespace: str = "default", **spec: Any) -> AgentManifest:
    """A manifest built in code (the demo and tests)."""
    return parse_manifest(
        {"apiVersion": API_VERSION, "kind": "Agent", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )
