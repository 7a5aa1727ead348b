"""Pod manifests in answers: YAML (the default, keys in the manifest's order) or JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import yaml
from fastapi import Query, Response

Format = Annotated[Literal["yaml", "json"], Query(description="yaml (default) or json")]
YAML_MEDIA = "application/yaml"

_POD = {"type": "object", "description": "A Kubernetes Pod manifest (apiVersion v1, kind Pod)."}
MANIFEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {YAML_MEDIA: {"schema": _POD}, "application/json": {"schema": _POD}}}
}


def manifest_response(
    manifest: dict[str, Any], output: str, headers: dict[str, str] | None = None
) -> Response:
    """A Pod manifest as YAML (keys in the manifest's order) or as indented JSON."""
    if output == "json":
        return Response(
            content=json.dumps(manifest, indent=2), media_type="application/json", headers=headers
        )
    text = yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
    return Response(content=text, media_type=YAML_MEDIA, headers=headers)
