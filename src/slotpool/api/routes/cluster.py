"""/cluster: the server processes on this database, and which one leads."""

from __future__ import annotations

from fastapi import APIRouter, Request

from slotpool.api.deps import Admin
from slotpool.api.schemas import ClusterOut
from slotpool.services.cluster import Election

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])


@router.get("", response_model=ClusterOut, response_model_by_alias=True)
async def cluster(request: Request, _: Admin) -> ClusterOut:
    """The replicas heard from lately (the last three leases), which one leads (runs the
    controller and the sweeper) since when, and whether each one's Pod settings agree with the
    leader's. On SQLite: the one server, which always leads."""
    election: Election = request.app.state.cluster
    return ClusterOut.of(await election.view())
