"""/k8s-config (read, validate, save) and /pod-preview (the exact Pod, before or after saving)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Query, Response

from slotpool.api.deps import Admin, ExpectedRevision, Services, ServicesDep
from slotpool.api.routes.pools import PoolId, etag
from slotpool.api.schemas import ConfigSaved, ErrorBody, RebuildOut, config_view
from slotpool.controller.pool_controller import RuntimeFailed
from slotpool.domain.config import PoolConfig
from slotpool.services.errors import RuntimeUnavailable
from slotpool.services.pools import Preview

router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}", tags=["config"])
SAVED = "K8s configuration updated successfully"
REBUILDING = "K8s configuration updated successfully and idle pods are being rebuilt"
FROZEN = (
    "K8s configuration updated successfully; a freeze window is active, so idle pods will be "
    "rebuilt when it ends"
)
REBUILD_FAILED = "K8s config updated but failed to rebuild idle pods: {}"
Format = Annotated[Literal["yaml", "json"], Query(description="yaml (default) or json")]
YAML_MEDIA = "application/yaml"


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
    reserved Pods are kept and rebuilt by the keeper once idle). ``freeze_schedules`` replaces the
    pool's windows only when present. A cluster failure after the save answers 502 with the
    seed's message: the config is saved, and the keeper keeps trying."""
    pool = await services.pools.save_config(pool_id, config, by=actor, expected_revision=revision)
    etag(response, pool)
    services.controller.poke(pool.pool_id, reread=True)  # its controller starts now if it can run
    message, rebuild = SAVED, None
    if services.controller.can_run(pool):
        try:
            report = await services.controller.rebuild_idle(pool)
        except RuntimeFailed as exc:
            raise RuntimeUnavailable(REBUILD_FAILED.format(exc)) from exc
        message = FROZEN if report.frozen else REBUILDING
        rebuild = RebuildOut(
            rebuilt=report.rebuilt, created=report.created, kept_busy=report.kept_busy
        )
    return ConfigSaved(
        message=message,
        pool_id=pool.pool_id,
        k8s_config=config_view(pool),
        config_hash=services.pools.config_hash(pool),
        revision=pool.revision,
        rebuild=rebuild,
    )


def render(preview: Preview, output: str) -> Response:
    headers = {"X-Slotpool-Config-Hash": preview.config_hash}
    if output == "json":
        return Response(
            content=json.dumps(preview.manifest, indent=2),
            media_type="application/json",
            headers=headers,
        )
    text = yaml.safe_dump(preview.manifest, sort_keys=False, default_flow_style=False)
    return Response(content=text, media_type=YAML_MEDIA, headers=headers)


_POD = {"type": "object", "description": "A Kubernetes Pod manifest (apiVersion v1, kind Pod)."}
_PREVIEW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {YAML_MEDIA: {"schema": _POD}, "application/json": {"schema": _POD}}}
}


DryRun = Annotated[
    bool,
    Query(
        description="Also send the Pod to the cluster as a server-side dry run (nothing is "
        "created): the API server's validation and admission (e.g. Pod Security) answer; a "
        "refusal is a 422 with its words. k8s pools on a server with a cluster only."
    ),
]


async def checked(services: Services, pool_id: str, preview: Preview, dry_run: bool) -> Preview:
    if dry_run:
        pool = await services.pools.get(pool_id)
        await services.controller.dry_run(pool, preview.spec)
    return preview


@router.get("/pod-preview", response_class=Response, responses=_PREVIEW_RESPONSES)
async def preview_saved(
    pool_id: PoolId,
    services: ServicesDep,
    _: Admin,
    format: Format = "yaml",
    dry_run: DryRun = False,
) -> Response:
    preview = await services.pools.preview(pool_id, None)
    return render(await checked(services, pool_id, preview, dry_run), format)


@router.post("/pod-preview", response_class=Response, responses=_PREVIEW_RESPONSES)
async def preview_candidate(
    pool_id: PoolId,
    config: PoolConfig,
    services: ServicesDep,
    _: Admin,
    format: Format = "yaml",
    dry_run: DryRun = False,
) -> Response:
    """The Pod a candidate configuration would make; nothing is saved."""
    preview = await services.pools.preview(pool_id, config)
    return render(await checked(services, pool_id, preview, dry_run), format)
