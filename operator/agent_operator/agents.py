"""Agents as the operator sees them, and the patches that record a placement (pure).

`AgentView` is the slice of an Agent object placement needs. `choose_pool` picks the agent's pool
(spec.runtimePool, else the pool of its model's region, else the namespace's only pool);
`pinned_pool` keeps a placed agent in the pool it was first placed in (`status.pool`): its log
lives on that pool's volume, so a later change of spec.runtimePool or spec.model.region is held,
not followed, and the `Placed` condition says so.
`placement_patch` / `pending_patch` return the merge patch for /status, or None when the object
already says so (so watch echoes of our own patches change nothing): a (re-)placement is that ONE
write, since shards watch `fieldSelector=status.shard=<shard>`. `finalizer_patch` adds the
finalizer, once, when the operator first sees an Agent without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agent_operator.models import FINALIZER, SHARD_PHASES
from agent_runtime.manifest import DEFAULT_ON_DELETE, AgentSpec


@dataclass(slots=True)
class AgentView:
    namespace: str
    name: str
    uid: str
    resource_version: int
    generation: int
    runtime_pool: str | None
    region: str | None
    on_delete: str
    status_shard: str | None
    phase: str | None
    conditions: list[dict[str, Any]]
    finalizers: tuple[str, ...]
    deleting: bool
    spec_error: str | None = None  # what AgentSpec's validators say that the CRD schema could not
    status_pool: str | None = None  # the pool it was first placed in (its log lives on that volume)
    target: str | None = field(default=None)  # what the operator set (or is setting) last

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def placed_reason(self) -> str | None:
        return _condition(self, "Placed").get("reason")

    @property
    def current(self) -> str | None:
        """The shard placement counts this agent on: our pending target, else its status.shard."""
        return self.target if self.target is not None else self.status_shard


def _rv(meta: Mapping[str, Any]) -> int:
    try:
        return int(meta.get("resourceVersion") or 0)
    except ValueError:
        return 0


def spec_error(spec: Mapping[str, Any]) -> str | None:
    """The first problem the runtime finds in a spec the apiserver accepted (an older CRD, or a rule
    a schema cannot say), as "spec.<field>: <msg>". Never raises: a validator that fails in an
    unforeseen way is reported the same way (the Agent gets phase Failed, not a crash loop)."""
    try:
        AgentSpec.model_validate(dict(spec))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("spec", *first["loc"]))
        return f"{where}: {first['msg']}"
    except Exception as exc:  # noqa: BLE001 - any refusal of the spec is the spec's problem, said plainly
        return f"spec: the runtime cannot parse it ({type(exc).__name__}: {exc})"
    return None


def agent_view(body: Mapping[str, Any], previous: AgentView | None = None) -> AgentView:
    """The view of `body`; `previous` (same object, same generation) spares re-validating the spec."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return AgentView(
        namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")), uid=str(meta.get("uid", "")),
        resource_version=_rv(meta),
        generation=int(meta.get("generation") or 0),
        runtime_pool=spec.get("runtimePool") or None,
        region=(spec.get("model") or {}).get("region") or None,
        on_delete=str(spec.get("onDelete") or DEFAULT_ON_DELETE),
        status_shard=status.get("shard") or None,
        status_pool=status.get("pool") or None,
        phase=status.get("phase"),
        conditions=list(status.get("conditions") or []),
        finalizers=tuple(meta.get("finalizers") or ()),
        deleting=bool(meta.get("deletionTimestamp")),
        spec_error=(previous.spec_error if previous is not None and previous.uid == meta.get("uid")
                    and previous.generation == int(meta.get("generation") or 0) else spec_error(spec)),
    )


def placement_fields(view: AgentView) -> tuple[Any, ...]:
    """What placement looks at: an event that changes none of these (turns, tokens, the shard's
    Ready condition...) needs no planning."""
    placed = next((c for c in view.conditions if c.get("type") == "Placed"), {})
    return (view.uid, view.generation, view.status_shard, view.status_pool, view.phase, view.finalizers,
            view.deleting, placed.get("status"), placed.get("reason"), placed.get("message"))


def choose_pool(agent: AgentView, pools: Mapping[str, str]) -> tuple[str | None, str]:
    """(pool name, reason) for an agent; `pools` maps the namespace's pool names to their regions."""
    if agent.runtime_pool:
        if agent.runtime_pool in pools:
            return agent.runtime_pool, ""
        return None, f"RuntimePool {agent.runtime_pool!r} not found in namespace {agent.namespace}"
    if agent.region:
        matching = sorted(p for p, region in pools.items() if region == agent.region)
        if matching:
            return matching[0], ""
    if len(pools) == 1:
        return next(iter(pools)), ""
    if not pools:
        return None, f"no RuntimePool in namespace {agent.namespace}"
    return None, (f"{len(pools)} RuntimePools in namespace {agent.namespace} and none for region "
                  f"{agent.region!r}; set spec.runtimePool")


def pinned_pool(agent: AgentView, pools: Mapping[str, str], pinned: str | None) -> tuple[str | None, str, str]:
    """(pool, reason, note) for an agent whose log lives on pool `pinned` (its status.pool, or the
    pool of the shard it is on; None: never placed, free to go where its spec says). A pinned agent
    stays in its pool whatever its spec now asks for; `note` then says what is held and why (empty
    when the spec agrees). `reason` is set when there is no pool (pool None), as for `choose_pool`."""
    wanted, reason = choose_pool(agent, pools)
    if pinned is None or pinned == wanted:
        return wanted, reason, ""
    if pinned not in pools:
        return None, (f"RuntimePool {pinned!r}, which holds this agent's log (status.pool), is not found in "
                      f"namespace {agent.namespace}; re-create the Agent to start over elsewhere"), ""
    asks = f"RuntimePool {wanted!r}" if wanted is not None else f"another pool ({reason})"
    return pinned, "", (f"spec asks for {asks}, but the agent's log lives on RuntimePool {pinned!r} "
                        f"(status.pool): it stays there; delete and re-create the Agent to move it")


def _with_condition(conditions: Sequence[Mapping[str, Any]], cond: dict[str, Any], now_iso: str) -> list[dict[str, Any]]:
    """`conditions` with the one of cond's type replaced (others, e.g. the shard's Ready, kept)."""
    out: list[dict[str, Any]] = []
    for c in conditions:
        if c.get("type") == cond["type"]:
            same = c.get("status") == cond["status"]
            cond = {**cond, "lastTransitionTime": c.get("lastTransitionTime") if same else now_iso}
        else:
            out.append(dict(c))
    cond.setdefault("lastTransitionTime", now_iso)
    return [*out, cond]


def _condition(agent: AgentView, ctype: str) -> Mapping[str, Any]:
    return next((c for c in agent.conditions if c.get("type") == ctype), {})


def finalizer_patch(agent: AgentView) -> dict[str, Any] | None:
    """The metadata patch adding our finalizer, or None when it is there (or the agent is going)."""
    if FINALIZER in agent.finalizers or agent.deleting:
        return None
    return {"metadata": {"finalizers": [*agent.finalizers, FINALIZER]}}


def placement_patch(agent: AgentView, shard: str, now_iso: str, pool: str | None = None,
                    note: str = "") -> dict[str, Any] | None:
    """The status patch placing `agent` on `shard` of `pool` (phase, shard, pool, condition Placed).
    The shard's own phases (Running, Idle, WaitingApproval) stay when the shard does not change.
    `note` (from `pinned_pool`): a spec change that is held, said in the condition (reason PoolPinned)."""
    message = f"placed on shard {shard}" + (f"; {note}" if note else "")
    reason = "PoolPinned" if note else "Placed"
    placed = _condition(agent, "Placed")
    # the shard's phases stay while it keeps the agent, Failed too (it could not activate it: the
    # shard retries with backoff, and its Ready condition says why)
    keep_phase = (agent.phase in SHARD_PHASES or agent.phase == "Failed") and agent.status_shard == shard
    status_ok = (agent.status_shard == shard and (keep_phase or agent.phase == "Placed")
                 and (pool is None or agent.status_pool == pool) and placed.get("status") == "True"
                 and placed.get("message") == message and placed.get("reason") == reason)
    if status_ok:
        return None
    status: dict[str, Any] = {"shard": shard, "conditions": _with_condition(
        agent.conditions, {"type": "Placed", "status": "True", "reason": reason, "message": message}, now_iso)}
    if pool is not None:
        status["pool"] = pool
    if not keep_phase:
        status["phase"] = "Placed"
    return {"status": status}


def pending_patch(agent: AgentView, reason: str, message: str, now_iso: str,
                  phase: str = "Pending") -> dict[str, Any] | None:
    """The status patch recording that `agent` has no shard, and why (phase Pending, or Failed for a
    spec no shard could run)."""
    placed = _condition(agent, "Placed")
    status_ok = (agent.phase == phase and agent.status_shard is None and placed.get("status") == "False"
                 and placed.get("reason") == reason and placed.get("message") == message)
    if status_ok:
        return None
    return {"status": {"phase": phase, "shard": None, "conditions": _with_condition(
        [c for c in agent.conditions if c.get("type") != "Ready"],
        {"type": "Placed", "status": "False", "reason": reason, "message": message}, now_iso)}}
