"""Liveness and readiness, without authentication, for probes and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 on any replica that reaches the database, leader or not; 503 once it stops (it has
    handed over and drains its connections: send no new requests)."""
    election = getattr(request.app.state, "cluster", None)
    if election is not None and election.stopping:
        return JSONResponse(status_code=503, content={"status": "stopping"})
    try:
        await request.app.state.store.ping()
    except Exception as exc:  # any failure to reach the database means not ready
        return JSONResponse(status_code=503, content={"status": "unavailable", "error": str(exc)})
    return JSONResponse(content={"status": "ok"})
