"""/admin-tokens: the admin tokens, by name (values are shown once, at creation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.schemas import (
    AdminTokenCreate,
    AdminTokenCreated,
    AdminTokenList,
    AdminTokenOut,
)
from slotpool.domain.text import Text

router = APIRouter(prefix="/api/v1/admin-tokens", tags=["admin tokens"])
# Not the creation pattern: names given before names had rules can be revoked too.
AdminTokenName = Annotated[Text, Path(min_length=1, max_length=100)]


@router.get("", response_model=AdminTokenList)
async def list_admin_tokens(services: ServicesDep, _: Admin) -> AdminTokenList:
    """Every admin token, never a value: the configured one first, then the stored ones."""
    now = services.pools.now()
    return AdminTokenList(
        items=[AdminTokenOut.of(t, now=now) for t in await services.auth.tokens()]
    )


@router.post("", response_model=AdminTokenCreated, status_code=status.HTTP_201_CREATED)
async def create_admin_token(
    body: AdminTokenCreate, services: ServicesDep, actor: Admin
) -> AdminTokenCreated:
    token, value = await services.auth.create(body.name, expires_at=body.expires_at, by=actor)
    out = AdminTokenOut.of(token, now=services.pools.now())
    return AdminTokenCreated(**out.model_dump(), token=value)


@router.delete("/{name}", response_model=AdminTokenOut)
async def revoke_admin_token(
    name: AdminTokenName, services: ServicesDep, actor: Admin
) -> AdminTokenOut:
    """Revoke: the token stops working at once (401 saying so) and stays listed as revoked.
    409 for the configured token and for the last one that works."""
    revoked = await services.auth.revoke(name, by=actor)
    return AdminTokenOut.of(revoked, now=services.pools.now())
