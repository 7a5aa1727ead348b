"""/api/v1/agent/...: what agents call, authenticated by their pool's token, never an admin's.

Only the agent's view of its own pool is here so far; registration, heartbeats, claims, logs and
results come with the agent.
"""

from __future__ import annotations

from fastapi import APIRouter

from slotpool.api.deps import Agent, ServicesDep
from slotpool.api.routes.pools import PoolId
from slotpool.api.schemas import AgentPoolView
from slotpool.domain.config import PoolConfig

router = APIRouter(prefix="/api/v1/agent", tags=["agent"])


@router.get("/pools/{pool_id}", response_model=AgentPoolView)
async def my_pool(pool_id: PoolId, identity: Agent, services: ServicesDep) -> AgentPoolView:
    services.tokens.require_scope(identity, pool_id)
    pool = await services.pools.get(pool_id)
    return AgentPoolView(
        pool_id=pool.pool_id,
        name=pool.name,
        pool_type=pool.pool_type,
        # Static agents are started by hand: the pool's setting (or its default) still applies.
        slots_per_pod=(pool.config or PoolConfig()).slots_per_pod,
        config_hash=services.pools.config_hash(pool),
        token_name=identity.token_name,
    )
