"""/agent-pools/{pool_id}/tokens: the pool's agent tokens (values are shown once, at creation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.routes.pools import PoolId
from slotpool.api.schemas import TokenCreate, TokenCreated, TokenList, TokenOut
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


@router.delete("/{name}", response_model=TokenOut)
async def revoke_token(
    pool_id: PoolId, name: TokenName, services: ServicesDep, _: Admin
) -> TokenOut:
    """Revoke: the token stops working at once and stays listed as revoked."""
    return TokenOut.of(await services.tokens.revoke(pool_id, name), now=services.pools.now())
