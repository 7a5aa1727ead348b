"""/agent-pools/{pool_id}/tokens: the pool's agent tokens (values are shown once, at creation)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, status

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.routes.pods import rebuild_out
from slotpool.api.routes.pools import PoolId
from slotpool.api.schemas import (
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    TokenRotate,
    TokenRotated,
)
from slotpool.domain.tokens import TOKEN_NAME_PATTERN
from slotpool.services.rotation import Rotated

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
    rotated = await services.rotation.rotate(pool_id, name, overlap=overlap, by=actor)
    now = services.pools.now()
    report = rotated.report
    return TokenRotated(
        message=rotated_message(rotated, name),
        old=TokenOut.of(rotated.old, now=now),
        new=TokenOut.of(rotated.new, now=now),
        token=rotated.value,
        secret=rotated.secret,
        rebuild=None if report is None else rebuild_out(report),
    )


def rotated_message(rotated: Rotated, name: str) -> str:
    if rotated.secret:
        return f"the Secret now holds {rotated.new.name}; Pods are being rebuilt to use it"
    return f"{rotated.new.name} replaces {name}, which expires after the overlap"


@router.delete("/{name}", response_model=TokenOut)
async def revoke_token(
    pool_id: PoolId, name: TokenName, services: ServicesDep, actor: Admin
) -> TokenOut:
    """Revoke: the token stops working at once and stays listed as revoked (the pool's events
    say who revoked it). 409 for the token the pool's Secret holds: rotate that one."""
    revoked = await services.tokens.revoke(pool_id, name, by=actor)
    return TokenOut.of(revoked, now=services.pools.now())
