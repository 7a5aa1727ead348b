"""/agent-pools/{pool_id}/tokens: the pool's agent tokens (values are shown once, at creation)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, status

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.routes.pools import PoolId
from slotpool.api.schemas import (
    RebuildOut,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    TokenRotate,
    TokenRotated,
)
from slotpool.domain.tokens import TOKEN_NAME_PATTERN

router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}/tokens", tags=["tokens"])
TokenName = Annotated[str, Path(pattern=TOKEN_NAME_PATTERN)]


@router.get("", response_model=TokenList)
async def list_tokens(pool_id: PoolId, services: ServicesDep, _: Admin) -> TokenList:
    now = services.pools.now()
    tokens = await services.tokens.list(pool_id)
    return TokenList(items=[TokenOut.of(t, now=now) for t in tokens])


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
async def create_token(
    pool_id: PoolId, body: TokenCreate, services: ServicesDep, actor: Admin
) -> TokenCreated:
    token, value = await services.tokens.create(
        pool_id, name=body.name, expires_at=body.expires_at, by=actor
    )
    out = TokenOut.of(token, now=services.pools.now())
    return TokenCreated(**out.model_dump(), token=value)


@router.get("/{name}", response_model=TokenOut)
async def get_token(pool_id: PoolId, name: TokenName, services: ServicesDep, _: Admin) -> TokenOut:
    return TokenOut.of(await services.tokens.get(pool_id, name), now=services.pools.now())


@router.post("/{name}/rotate", response_model=TokenRotated)
async def rotate_token(
    pool_id: PoolId, name: TokenName, body: TokenRotate, services: ServicesDep, actor: Admin
) -> TokenRotated:
    """Replace a token with a new one; the old one stays valid for the overlap. The token in the
    pool's Secret is replaced in the Secret, and the Pods are rebuilt to use the new one (idle
    ones now, busy ones once idle); the old one is revoked as soon as no Pod runs with it."""
    overlap = timedelta(seconds=body.overlap_seconds)
    now = services.pools.now
    pool = await services.pools.get(pool_id)
    if pool.agent_token == name and services.controller.can_run(pool):
        new_name, _old, report = await services.controller.rotate_secret_token(
            pool_id, overlap=overlap, by=actor
        )
        old_token = await services.tokens.get(pool_id, name)
        new_token = await services.tokens.get(pool_id, new_name)
        return TokenRotated(
            message=f"the Secret now holds {new_name}; Pods are being rebuilt to use it",
            old=TokenOut.of(old_token, now=now()),
            new=TokenOut.of(new_token, now=now()),
            token=None,
            secret=True,
            rebuild=RebuildOut(
                rebuilt=report.rebuilt, created=report.created, kept_busy=report.kept_busy
            ),
        )
    old, new, value = await services.tokens.rotate(pool_id, name, overlap=overlap, by=actor)
    return TokenRotated(
        message=f"{new.name} replaces {name}, which expires after the overlap",
        old=TokenOut.of(old, now=now()),
        new=TokenOut.of(new, now=now()),
        token=value,
        secret=False,
        rebuild=None,
    )


@router.delete("/{name}", response_model=TokenOut)
async def revoke_token(
    pool_id: PoolId, name: TokenName, services: ServicesDep, _: Admin
) -> TokenOut:
    """Revoke: the token stops working at once and stays listed as revoked."""
    return TokenOut.of(await services.tokens.revoke(pool_id, name), now=services.pools.now())
