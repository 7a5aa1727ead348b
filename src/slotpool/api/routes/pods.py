"""/agent-pools/{pool_id}/pods: a pool's pods with their slots, as the control plane knows them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.routes.pools import PoolId
from slotpool.domain.config import PoolType
from slotpool.domain.tasks import PodState, SlotState
from slotpool.services.errors import Conflict

router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}/pods", tags=["pods"])


class SlotOut(BaseModel):
    index: int
    state: SlotState
    task_id: str | None
    since: datetime


class PodOut(BaseModel):
    name: str
    state: PodState
    outdated: bool
    config_hash: str | None
    reason: str
    agent_version: str | None
    registered_at: datetime | None
    last_heartbeat_at: datetime | None
    created_at: datetime
    slots: list[SlotOut]


class PodList(BaseModel):
    items: list[PodOut]


class SyncOut(BaseModel):
    message: str
    pool_id: str
    secret: str
    created: list[str]
    rebuilt: list[str]
    ended: list[str]


sync_router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}", tags=["pods"])


@sync_router.post("/sync-deployment", response_model=SyncOut)
async def sync_deployment(pool_id: PoolId, services: ServicesDep, _: Admin) -> SyncOut:
    """Ensure the token Secret, book pods that ended, rebuild idle outdated pods, start pods up
    to min_replicas. (The path keeps the seed's name; slotpool never makes a Deployment.)"""
    pool = await services.pools.get(pool_id)
    if pool.pool_type is PoolType.static:
        raise Conflict(f"{pool_id} is a static pool: its agents are started by hand, no Pods")
    if pool.pool_type is PoolType.k8s or services.local_pods is None:
        raise Conflict(f"no runtime for {pool.pool_type} pools runs in this server yet")
    report = await services.local_pods.sync(pool)
    return SyncOut(
        message="Pod configuration synced successfully",
        pool_id=pool_id,
        secret=report.secret,
        created=report.created,
        rebuilt=report.rebuilt,
        ended=report.ended,
    )


@router.get("", response_model=PodList)
async def list_pods(pool_id: PoolId, services: ServicesDep, _: Admin) -> PodList:
    pool = await services.pools.get(pool_id)
    current = services.pools.config_hash(pool)
    pods = await services.agents.pods(pool_id)
    return PodList(
        items=[
            PodOut(
                name=p.name,
                state=p.state,
                outdated=p.config_hash is not None and p.config_hash != current,
                config_hash=p.config_hash,
                reason=p.reason,
                agent_version=p.agent_version,
                registered_at=p.registered_at,
                last_heartbeat_at=p.last_heartbeat_at,
                created_at=p.created_at,
                slots=[
                    SlotOut(index=s.index, state=s.state, task_id=s.task_id, since=s.since)
                    for s in p.slots
                ],
            )
            for p in pods
        ]
    )
