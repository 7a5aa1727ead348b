"""/agent-pools/{pool_id}/pods: a pool's pods with their slots, as the control plane knows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.manifests import MANIFEST_RESPONSES, Format, manifest_response
from slotpool.api.routes.pools import PoolId
from slotpool.api.schemas import EventFields, RebuildOut
from slotpool.domain.events import Outcome
from slotpool.domain.pods import EndCause, Pod, PodEnd, PodState, SlotState
from slotpool.domain.text import Text
from slotpool.services.ports import SyncReport

router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}/pods", tags=["pods"])


class SlotOut(BaseModel):
    index: int
    state: SlotState
    task_id: str | None
    since: datetime


class PodOutcomeOut(BaseModel):
    """Why a Pod is on its way out or gone."""

    cause: EndCause = Field(
        description="On purpose: scaled_down, replaced, drained, frozen, removed. Failures: "
        "crashed, exited, evicted, agent_lost, vanished, deleted_outside, not_started."
    )
    deliberate: bool = Field(
        description="True: deleted on purpose (it ends as state deleted); false: it failed."
    )
    by: str | None = Field(description="Who asked for it (a manual drain), if someone did.")
    text: str = Field(
        description="In words, as the CLI and the UI show it: 'scaled down', 'replaced by a "
        "rebuild', 'drained by admin', 'crashed', 'agent lost'..."
    )

    @classmethod
    def of(cls, end: PodEnd) -> PodOutcomeOut:
        return cls(cause=end.cause, deliberate=end.deliberate, by=end.by, text=end.describe())


class PodOut(BaseModel):
    name: str
    state: PodState = Field(
        description="pending, starting, ready, draining, terminating, then deleted (ended on "
        "purpose) or failed (ended on its own); outcome says why."
    )
    outcome: PodOutcomeOut | None = Field(
        default=None,
        description="Why the Pod is going or gone (set once slotpool began deleting or "
        "draining it, or it ended); null for a Pod in service.",
    )
    outdated: bool
    config_hash: str | None
    reason: str = Field(description="Why the Pod is in its state, e.g. the scheduler's reason.")
    phase: str | None = Field(description="The runtime's phase (Kubernetes: Pending, Running...).")
    node: str | None
    agent_version: str | None
    registered_at: datetime | None
    last_heartbeat_at: datetime | None
    created_at: datetime
    slots: list[SlotOut]


class PodList(BaseModel):
    items: list[PodOut]


class PendingOut(BaseModel):
    name: str
    reason: str


class SyncOut(BaseModel):
    message: str
    pool_id: str
    secret: str = Field(description="The token Secret: created, recreated or unchanged.")
    adopted: list[str] = Field(description="Pods found in the runtime and recorded.")
    created: list[str]
    rebuilt: list[str] = Field(description="Idle Pods with an outdated config, replaced.")
    ended: list[str] = Field(description="Pods that ended or vanished; their tasks are lost.")
    removed: list[str] = Field(description="Idle Pods deleted because a freeze is active.")
    kept_busy: list[str] = Field(description="Outdated Pods kept: a slot is busy or reserved.")
    pending: list[PendingOut] = Field(description="Pods not running yet, with the reason.")
    frozen: bool
    decision: dict[str, Any] = Field(
        description="The controller's decision: inputs, desired Pods, actions, holds, wake_at."
    )


def sync_out(message: str, pool_id: str, report: SyncReport) -> SyncOut:
    return SyncOut(
        message=message,
        pool_id=pool_id,
        secret=report.secret,
        adopted=report.adopted,
        created=report.created,
        rebuilt=report.rebuilt,
        ended=report.ended,
        removed=report.removed,
        kept_busy=report.kept_busy,
        pending=[PendingOut(name=p.name, reason=p.reason) for p in report.pending],
        frozen=report.frozen,
        decision=report.decision,
    )


def rebuild_out(report: SyncReport) -> RebuildOut:
    return RebuildOut(rebuilt=report.rebuilt, created=report.created, kept_busy=report.kept_busy)


sync_router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}", tags=["pods"])


@sync_router.post("/sync-deployment", response_model=SyncOut)
async def sync_deployment(pool_id: PoolId, services: ServicesDep, actor: Admin) -> SyncOut:
    """Ensure the token Secret, sync Pods from the runtime into the database (adopt, drop those
    gone), rebuild idle outdated Pods, create Pods up to min_replicas. (The path keeps the seed's
    name; slotpool never makes a Deployment.)"""
    report = await services.deployment.sync(pool_id, by=actor)
    return sync_out("Pod configuration synced successfully", pool_id, report)


def pod_out(p: Pod, current_hash: str | None) -> PodOut:
    return PodOut(
        name=p.name,
        state=p.state,
        outcome=None if p.end is None else PodOutcomeOut.of(p.end),
        outdated=p.config_hash is not None and p.config_hash != current_hash,
        config_hash=p.config_hash,
        reason=p.reason,
        phase=p.phase,
        node=p.node,
        agent_version=p.agent_version,
        registered_at=p.registered_at,
        last_heartbeat_at=p.last_heartbeat_at,
        created_at=p.created_at,
        slots=[
            SlotOut(index=s.index, state=s.state, task_id=s.task_id, since=s.since) for s in p.slots
        ],
    )


@router.get("", response_model=PodList)
async def list_pods(pool_id: PoolId, services: ServicesDep, _: Admin) -> PodList:
    pool = await services.pools.get(pool_id)
    current = services.pools.config_hash(pool)
    pods = await services.agents.pods(pool_id)
    return PodList(items=[pod_out(p, current) for p in pods])


PodName = Annotated[Text, Path(min_length=1, max_length=253, description="The Pod's name.")]


@router.delete("/{name}", response_model=PodOut, status_code=202)
async def drain_pod(pool_id: PoolId, name: PodName, services: ServicesDep, actor: Admin) -> PodOut:
    """Drain the Pod: it takes no new task, its running and reserved tasks finish, then the
    controller deletes it (never while a slot is busy or reserved). Answers 202 with the Pod as
    it is now (``draining``, outcome ``drained by <you>``). Idempotent: asking again, or for a
    Pod already on its way out, changes nothing. If the pool still needs a Pod in its place
    (min_replicas, queued work), the controller creates one at once: a draining Pod is no
    longer counted as capacity."""
    pod = await services.drain.drain(pool_id, name, by=actor)
    pool = await services.pools.get(pool_id)
    return pod_out(pod, services.pools.config_hash(pool))


@router.get("/{name}/manifest", response_class=Response, responses=MANIFEST_RESPONSES)
async def pod_manifest(
    pool_id: PoolId, name: PodName, services: ServicesDep, _: Admin, format: Format = "yaml"
) -> Response:
    """The Pod as the cluster holds it now (defaults included; no status, no managed fields):
    what it actually runs, to compare with the saved or a candidate configuration's Pod. 404
    for a Pod the pool does not have; 409 for local and static pools (no Pods, no manifest)."""
    return manifest_response(await services.deployment.running_manifest(pool_id, name), format)


class EventOut(EventFields):
    id: int
    at: datetime
    action: str = Field(description="create_pods, delete_pod, rebuild_pod, delete_stuck_pod, hold")
    reason: str = Field(description="Why, as a code: scale_up, scale_down, freeze, backoff, ...")
    message: str
    pod: str | None
    outcome: Outcome
    inputs: dict[str, Any] = Field(
        description="What the decision saw (queued, busy, reserved, idle slots, Pods by state, "
        "min and max, freeze, back-off) and what it computed."
    )


class EventList(BaseModel):
    items: list[EventOut]
    total: int


events_router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}", tags=["pods"])


@events_router.get("/events", response_model=EventList)
async def list_events(
    pool_id: PoolId,
    services: ServicesDep,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Older than this id")
    ] = None,
) -> EventList:
    """The controller's decisions and actions for this pool, newest first, with their reasons."""
    events, total = await services.events.page(pool_id, limit=limit, before=before)
    return EventList(
        items=[EventOut.of(e) for e in events],
        total=total,
    )
