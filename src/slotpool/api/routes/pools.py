"""/api/v1/agent-pools: list, create, read, rename and describe, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from slotpool.api.deps import Admin, ExpectedRevision, Services, ServicesDep
from slotpool.api.pool_page import page_json
from slotpool.api.schemas import PoolCreate, PoolList, PoolOut, PoolPatch
from slotpool.domain.pools import POOL_ID_PATTERN, POOL_NAME_PATTERN, Pool
from slotpool.services.stats import PoolCounts

router = APIRouter(prefix="/api/v1/agent-pools", tags=["pools"])
PoolId = Annotated[str, Path(pattern=POOL_ID_PATTERN, description="pool- and 16 of [a-z0-9]")]


def pool_out(services: Services, pool: Pool, counts: PoolCounts) -> PoolOut:
    return PoolOut.of(
        pool,
        config_hash=services.pools.config_hash(pool),
        freeze=services.freeze.state(pool),
        counts=counts,
        no_pods_reason=services.controller.why_no_pods(pool),
    )


async def pools_out(services: Services, pools: list[Pool]) -> list[PoolOut]:
    """The pools with their Pod, slot and queue counts (one query for the whole page)."""
    counts = await services.stats.pool_counts([p.pool_id for p in pools])
    return [pool_out(services, p, counts[p.pool_id]) for p in pools]


async def one_pool_out(services: Services, pool: Pool) -> PoolOut:
    return (await pools_out(services, [pool]))[0]


def etag(response: Response, pool: Pool) -> None:
    response.headers["ETag"] = f'"{pool.revision}"'


@router.get("", response_model=PoolList)
async def list_pools(
    services: ServicesDep,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    name: Annotated[
        str | None, Query(pattern=POOL_NAME_PATTERN, max_length=63, description="Exact name")
    ] = None,
) -> Response:
    """A page of pools by name: up to 1,000 pools, shown as stored and serialised once
    (``api/pool_page.py``), as ``PoolList`` of the single pool's answers would be."""
    page = await services.pools.page(limit=limit, offset=offset, name=name)
    body = await page_json(services, page, limit=limit, offset=offset)
    return Response(body, media_type="application/json")


@router.post("", response_model=PoolOut, status_code=status.HTTP_201_CREATED)
async def create_pool(
    body: PoolCreate, services: ServicesDep, actor: Admin, response: Response
) -> PoolOut:
    """Create a pool. Where this server can give it no Pods (a k8s pool and no cluster
    configured, no configuration yet), ``no_pods_reason`` says why and what to do, and so do
    the pool's events, the server's log and the reason of every task it queues."""
    pool = await services.pools.create(
        name=body.name,
        description=body.description,
        pool_type=body.pool_type,
        config=body.k8s_config,
        by=actor,
    )
    await services.no_pods.note(pool)  # a pool that gets no Pods says why from the start
    response.headers["Location"] = f"{router.prefix}/{pool.pool_id}"
    etag(response, pool)
    return await one_pool_out(services, pool)


@router.get("/{pool_id}", response_model=PoolOut)
async def get_pool(pool_id: PoolId, services: ServicesDep, _: Admin, response: Response) -> PoolOut:
    pool = await services.pools.get(pool_id)
    etag(response, pool)
    return await one_pool_out(services, pool)


@router.patch("/{pool_id}", response_model=PoolOut)
async def patch_pool(
    pool_id: PoolId,
    body: PoolPatch,
    services: ServicesDep,
    actor: Admin,
    revision: ExpectedRevision,
    response: Response,
) -> PoolOut:
    pool = await services.pools.update(
        pool_id, changes=body.changes(), by=actor, expected_revision=revision
    )
    etag(response, pool)
    return await one_pool_out(services, pool)


@router.delete("/{pool_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_pool(
    pool_id: PoolId,
    services: ServicesDep,
    actor: Admin,
    force: Annotated[
        bool,
        Query(description="Delete even while tasks are queued, run or await approval."),
    ] = False,
) -> Response:
    """Delete the pool, its Pods and its token Secret; 409 while it has open tasks."""
    await services.removal.remove(pool_id, force=force, by=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
