"""/api/v1/agent/...: what agents call, never with an admin's token: ``register`` with their
pool's token (or, again, with their own credential), everything else with their credential.

The protocol is described in docs/agent-protocol.md; its requests and answers are the models of
``slotpool.protocol``, the same the agent parses with.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from slotpool.api.deps import Agent, ServicesDep
from slotpool.api.routes.pools import PoolId
from slotpool.domain.config import PoolConfig
from slotpool.protocol import (
    AGENT_NAME_PATTERN,
    AgentPoolView,
    ClaimAnswer,
    ClaimRequest,
    HeartbeatAnswer,
    HeartbeatRequest,
    LogBatch,
    LogChunk,
    RegisterAnswer,
    RegisterRequest,
    ResultAnswer,
    StepResult,
)
from slotpool.services.tokens import AgentIdentity

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
        token_name=identity.token_name if isinstance(identity, AgentIdentity) else "",
    )


AgentName = Annotated[str, Path(pattern=AGENT_NAME_PATTERN, max_length=253)]
TaskId = Annotated[str, Path(pattern=r"^task-[a-z0-9]{16}$")]


@router.post("/pools/{pool_id}/register", response_model=RegisterAnswer)
async def register(
    pool_id: PoolId, body: RegisterRequest, identity: Agent, services: ServicesDep
) -> RegisterAnswer:
    return await services.agents.register(
        identity,
        pool_id,
        name=body.name,
        slots=body.slots,
        version=body.version,
        running=body.running,
        pod_uid=body.pod_uid,
        credential=body.credential,
    )


@router.post("/pools/{pool_id}/pods/{name}/heartbeat", response_model=HeartbeatAnswer)
async def heartbeat(
    pool_id: PoolId, name: AgentName, body: HeartbeatRequest, identity: Agent, services: ServicesDep
) -> HeartbeatAnswer:
    return await services.agents.heartbeat(identity, pool_id, name, draining=body.draining)


@router.post("/pools/{pool_id}/pods/{name}/claim", response_model=ClaimAnswer)
async def claim(
    pool_id: PoolId, name: AgentName, body: ClaimRequest, identity: Agent, services: ServicesDep
) -> ClaimAnswer:
    return await services.agents.claim(
        identity,
        pool_id,
        name,
        free_slots=body.free_slots,
        reserved_slots=body.reserved_slots,
        wait_seconds=body.wait_seconds,
    )


StepIndex = Annotated[int, Path(ge=0, le=50)]


@router.post(
    "/pools/{pool_id}/tasks/{task_id}/steps/{step_index}/logs",
    status_code=status.HTTP_204_NO_CONTENT,
)
async def append_logs(
    pool_id: PoolId,
    task_id: TaskId,
    step_index: StepIndex,
    body: LogBatch,
    identity: Agent,
    services: ServicesDep,
) -> Response:
    chunks = [chunk.output() for chunk in body.chunks]
    await services.agents.log(identity, pool_id, task_id, step=step_index, chunks=chunks)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/pools/{pool_id}/tasks/{task_id}/logs", status_code=status.HTTP_204_NO_CONTENT)
async def append_log(
    pool_id: PoolId, task_id: TaskId, body: LogChunk, identity: Agent, services: ServicesDep
) -> Response:
    """One chunk, as agents before batches send it."""
    step = body.step_index
    await services.agents.log(identity, pool_id, task_id, step=step, chunks=[body.output()])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/pools/{pool_id}/tasks/{task_id}/steps/{step_index}/result", response_model=ResultAnswer
)
async def step_result(
    pool_id: PoolId,
    task_id: TaskId,
    step_index: StepIndex,
    body: StepResult,
    identity: Agent,
    services: ServicesDep,
    then: Annotated[
        bool,
        Query(
            description="The agent takes a queued task in the freed slot with the answer "
            "(``then``), so that it need not claim it."
        ),
    ] = False,
) -> ResultAnswer:
    return await services.agents.result(
        identity,
        pool_id,
        task_id,
        step_index=step_index,
        status=body.status,
        exit_code=body.exit_code,
        message=body.message,
        then=then,
    )
