"""Dependencies shared by the routers: the services built at start-up, and the admin check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from slotpool.api import access
from slotpool.controller.assembly import PoolController
from slotpool.services.agents import AgentService
from slotpool.services.auth import AdminAuth
from slotpool.services.deployment import DeploymentService
from slotpool.services.errors import Invalid
from slotpool.services.events import EventService
from slotpool.services.freeze import FreezeService
from slotpool.services.history import HistoryService
from slotpool.services.locks import PoolLocks
from slotpool.services.no_pods import NoPods
from slotpool.services.pod_drain import PodDrain
from slotpool.services.pool_removal import PoolRemoval
from slotpool.services.pools import PoolService
from slotpool.services.rotation import TokenRotation
from slotpool.services.stats import StatsService
from slotpool.services.tasks import TaskService
from slotpool.services.tokens import AgentCaller, RegisteredAgent, TokenService
from slotpool.settings import Settings


@dataclass(frozen=True)
class Services:
    auth: AdminAuth
    pools: PoolService
    freeze: FreezeService
    tokens: TokenService
    tasks: TaskService
    agents: AgentService
    settings: Settings
    controller: PoolController
    stats: StatsService
    events: EventService
    history: HistoryService
    deployment: DeploymentService
    removal: PoolRemoval
    rotation: TokenRotation
    drain: PodDrain
    no_pods: NoPods
    locks: PoolLocks


def _services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


# The dependencies are ``async def`` although none of them awaits: FastAPI runs a plain ``def``
# dependency in a worker thread, a thread hop on every request.
async def services(request: Request) -> Services:
    return _services(request)


_bearer = HTTPBearer(auto_error=False, description="The admin token.")
_agent_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AgentToken",
    description="A pool's agent token (to register), or the agent's own credential (after).",
)


async def admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Authenticates the caller; returns the actor name recorded in audit fields."""
    token = credentials.credentials if credentials else None
    name = await _services(request).auth.authenticate(token)
    access.identify(f"admin:{name}")
    return name


async def expected_revision(
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


async def agent(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_agent_bearer)],
) -> AgentCaller:
    """Authenticates an agent by its pool token or its credential (401); what it may reach is
    checked per call (403)."""
    token = credentials.credentials if credentials else None
    caller = await _services(request).tokens.authenticate(token)
    if isinstance(caller, RegisteredAgent):
        access.identify(
            f"agent:{caller.pool_id}/{caller.name}", pool=caller.pool_id, pod=caller.name
        )
    else:
        access.identify(f"pool-token:{caller.pool_id}/{caller.token_name}", pool=caller.pool_id)
    return caller


Admin = Annotated[str, Depends(admin)]
Agent = Annotated[AgentCaller, Depends(agent)]
ServicesDep = Annotated[Services, Depends(services)]
ExpectedRevision = Annotated[int | None, Depends(expected_revision)]
