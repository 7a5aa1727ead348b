"""Dependencies shared by the routers: the services built at start-up, and the admin check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from slotpool.services.auth import AdminAuth
from slotpool.services.errors import Invalid
from slotpool.services.freeze import FreezeService
from slotpool.services.pools import PoolService


@dataclass(frozen=True)
class Services:
    auth: AdminAuth
    pools: PoolService
    freeze: FreezeService


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


_bearer = HTTPBearer(auto_error=False, description="The admin token.")


async def admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Authenticates the caller; returns the actor name recorded in audit fields."""
    token = credentials.credentials if credentials else None
    return await services(request).auth.authenticate(token)


def expected_revision(
    if_match: Annotated[
        str | None,
        Header(description='Optional: the pool revision you read, e.g. "3"; 412 if it moved.'),
    ] = None,
) -> int | None:
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise Invalid('If-Match must be a pool revision such as "3"')
    return int(value)


Admin = Annotated[str, Depends(admin)]
ServicesDep = Annotated[Services, Depends(services)]
ExpectedRevision = Annotated[int | None, Depends(expected_revision)]
