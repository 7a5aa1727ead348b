"""/k8s-config (read, validate, save) and /pod-preview (the exact Pod, before or after saving)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from slotpool.api.deps import Admin, ExpectedRevision, ServicesDep
from slotpool.api.manifests import MANIFEST_RESPONSES, Format, manifest_response
from slotpool.api.routes.pods import rebuild_out
from slotpool.api.routes.pools import PoolId, etag
from slotpool.api.schemas import ConfigSaved, ErrorBody, config_view
from slotpool.domain.config import PoolConfig
from slotpool.services.pools import Preview
from slotpool.services.ports import SyncReport

router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}", tags=["config"])
SAVED = "K8s configuration updated successfully"
REBUILDING = "K8s configuration updated successfully and idle pods are being rebuilt"
FROZEN = (
    "K8s configuration updated successfully; a freeze window is active, so idle pods will be "
    "rebuilt when it ends"
)


@router.get("/k8s-config", response_model=dict[str, Any] | None)
async def get_config(
    pool_id: PoolId, services: ServicesDep, _: Admin, response: Response
) -> dict[str, Any] | None:
    pool = await services.pools.get(pool_id)
    etag(response, pool)
    return config_view(pool)


@router.put("/k8s-config", response_model=ConfigSaved, responses={502: {"model": ErrorBody}})
async def put_config(
    pool_id: PoolId,
    config: PoolConfig,
    services: ServicesDep,
    actor: Admin,
    revision: ExpectedRevision,
    response: Response,
) -> ConfigSaved:
    """Validate and save, then rebuild every idle Pod whose config is now outdated (busy and
    reserved Pods are kept and rebuilt by the controller once idle). ``freeze_schedules``
    replaces the pool's windows only when present. A cluster failure after the save answers 502
    with the seed's message: the config is saved, and the controller keeps trying."""
    saved = await services.deployment.save_config(
        pool_id, config, by=actor, expected_revision=revision
    )
    pool, report = saved.pool, saved.report
    etag(response, pool)
    return ConfigSaved(
        message=saved_message(report),
        pool_id=pool.pool_id,
        k8s_config=config_view(pool),
        config_hash=services.pools.config_hash(pool),
        revision=pool.revision,
        rebuild=None if report is None else rebuild_out(report),
    )


def saved_message(report: SyncReport | None) -> str:
    if report is None:
        return SAVED
    return FROZEN if report.frozen else REBUILDING


def render(preview: Preview, output: str) -> Response:
    headers = {"X-Slotpool-Config-Hash": preview.config_hash}
    return manifest_response(preview.manifest, output, headers)


DryRun = Annotated[
    bool,
    Query(
        description="Also send the Pod to the cluster as a server-side dry run (nothing is "
        "created): the API server's validation and admission (e.g. Pod Security) answer; a "
        "refusal is a 422 with its words. k8s pools on a server with a cluster only."
    ),
]


@router.get("/pod-preview", response_class=Response, responses=MANIFEST_RESPONSES)
async def preview_saved(
    pool_id: PoolId,
    services: ServicesDep,
    _: Admin,
    format: Format = "yaml",
    dry_run: DryRun = False,
) -> Response:
    return render(await services.deployment.preview(pool_id, None, dry_run=dry_run), format)


@router.post("/pod-preview", response_class=Response, responses=MANIFEST_RESPONSES)
async def preview_candidate(
    pool_id: PoolId,
    config: PoolConfig,
    services: ServicesDep,
    _: Admin,
    format: Format = "yaml",
    dry_run: DryRun = False,
) -> Response:
    """The Pod a candidate configuration would make; nothing is saved."""
    return render(await services.deployment.preview(pool_id, config, dry_run=dry_run), format)
