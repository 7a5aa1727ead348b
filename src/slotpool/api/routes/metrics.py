"""/metrics: Prometheus's text format; this process's histograms and counters, every pool's
gauges read from the database now (README, "Metrics")."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from slotpool import metrics
from slotpool.api.deps import ServicesDep
from slotpool.services.errors import Unauthorized

router = APIRouter(tags=["metrics"])
_bearer = HTTPBearer(auto_error=False, scheme_name="MetricsToken")


@router.get("/metrics", include_in_schema=False)
async def scrape(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Response:
    expected = services.settings.metrics_token
    if expected is not None:
        shown = credentials.credentials if credentials else ""
        if not hmac.compare_digest(shown.encode(), expected.get_secret_value().encode()):
            raise Unauthorized("/metrics needs the bearer token SLOTPOOL_METRICS_TOKEN names")
    body = metrics.exposition(await services.stats.pool_gauges())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
