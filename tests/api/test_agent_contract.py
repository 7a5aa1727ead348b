"""The agent protocol in the published OpenAPI contract: every answer typed down to its leaves
(the claim's assignments and their steps included), every request closed to unknown fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slotpool.api.app import create_app
from tests.api.conftest import settings_for

AGENT = "/api/v1/agent/pools/{pool_id}"
ANSWERS = {
    ("get", ""): "AgentPoolView",
    ("post", "/register"): "RegisterAnswer",
    ("post", "/pods/{name}/heartbeat"): "HeartbeatAnswer",
    ("post", "/pods/{name}/claim"): "ClaimAnswer",
    ("post", "/tasks/{task_id}/steps/{step_index}/result"): "ResultAnswer",
}
REQUESTS = {
    "/register": "RegisterRequest",
    "/pods/{name}/heartbeat": "HeartbeatRequest",
    "/pods/{name}/claim": "ClaimRequest",
    "/tasks/{task_id}/logs": "LogChunk",
    "/tasks/{task_id}/steps/{step_index}/logs": "LogBatch",
    "/tasks/{task_id}/steps/{step_index}/result": "StepResult",
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # The contract needs no database: the app is built, never started.
    database = Path(tmp_path_factory.mktemp("contract")) / "unused.db"
    openapi: dict[str, Any] = create_app(settings_for(f"sqlite:///{database}")).openapi()
    return openapi


def untyped(schema: dict[str, Any], components: dict[str, Any], at: str = "$") -> list[str]:
    """Where ``schema`` leaves a value's type open: ``{}``, a bare object, free-form properties."""
    if "$ref" in schema:
        return untyped(components[schema["$ref"].rsplit("/", 1)[1]], components, at)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return [p for s in schema[key] for p in untyped(s, components, at)]
    kind = schema.get("type")
    if kind == "array":
        return untyped(schema.get("items", {}), components, f"{at}[]")
    if kind == "object":
        return _untyped_object(schema, components, at)
    return [] if kind or "enum" in schema or "const" in schema else [at]


def _untyped_object(schema: dict[str, Any], components: dict[str, Any], at: str) -> list[str]:
    extra = schema.get("additionalProperties")
    if extra is True or (extra is None and not schema.get("properties")):
        return [at]
    found = [
        p
        for name, field in schema.get("properties", {}).items()
        for p in untyped(field, components, f"{at}.{name}")
    ]
    return found + (untyped(extra, components, f"{at}.*") if isinstance(extra, dict) else [])


def answer_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = spec["paths"][AGENT + path][method]
    schema: dict[str, Any] = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return schema


def test_the_walker_finds_what_the_claim_answer_used_to_be() -> None:
    before = {"type": "array", "items": {"additionalProperties": True, "type": "object"}}
    assert untyped(before, {}, "$.assignments") == ["$.assignments[]"]
    assert untyped({}, {}) == ["$"]
    assert untyped({"type": "object"}, {}) == ["$"]


@pytest.mark.parametrize(("call", "name"), list(ANSWERS.items()))
def test_every_agent_answer_is_typed_to_its_leaves(
    spec: dict[str, Any], call: tuple[str, str], name: str
) -> None:
    schema = answer_schema(spec, *call)
    assert schema == {"$ref": f"#/components/schemas/{name}"}
    assert untyped(schema, spec["components"]["schemas"]) == []


def test_the_claim_answer_types_its_assignments_fully(spec: dict[str, Any]) -> None:
    components = spec["components"]["schemas"]
    claim = components["ClaimAnswer"]
    assert claim["required"] == ["assignments", "cancel", "release"]
    assert claim["properties"]["assignments"]["items"] == {
        "$ref": "#/components/schemas/Assignment"
    }
    item = components["Assignment"]
    assert item["required"] == ["task_id", "slot", "step_index", "step", "env", "new_workdir"]
    assert item["properties"]["env"]["additionalProperties"] == {"type": "string"}
    step = components[item["properties"]["step"]["$ref"].rsplit("/", 1)[1]]
    # The keys a step does not use are left out, so only the name is always there.
    assert step["required"] == ["name"]
    assert {name: field.get("type") for name, field in step["properties"].items()} == {
        "name": "string",
        "run": "string",
        "command": "array",
        "timeout_seconds": "integer",
    }
    result = components["ResultAnswer"]["properties"]["next"]
    assert result["anyOf"] == [{"$ref": "#/components/schemas/Assignment"}, {"type": "null"}]


@pytest.mark.parametrize(("path", "name"), list(REQUESTS.items()))
def test_agent_requests_refuse_unknown_fields(spec: dict[str, Any], path: str, name: str) -> None:
    body = spec["paths"][AGENT + path]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": f"#/components/schemas/{name}"}
    assert spec["components"]["schemas"][name]["additionalProperties"] is False
