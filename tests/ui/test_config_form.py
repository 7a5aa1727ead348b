"""The configuration form saves the whole stored configuration: a field the form does not show
comes back from a save exactly as it was, whether the form's build knows the field or not."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Page, Request, Route, expect

from slotpool.domain.config import PoolConfig
from tests.ui.conftest import SLOW, Server, Shots

# The configuration's fields the form shows (ui/src/components/configForm.ts, shownFields).
SHOWN = {
    "image",
    "image_pull_policy",
    "command",
    "args",
    "env",
    "resources",
    "min_replicas",
    "max_replicas",
    "slots_per_pod",
    "namespace",
    "scale_down_delay_seconds",
    "min_idle_slots",
    "pending_timeout_seconds",
}
# A value other than the default for every field the form does not show. A field added to the
# model must get one here (the first test checks it), and so is covered by the save below.
HIDDEN: dict[str, Any] = {
    "service_account": "ci-agent",
    "node_selector": {"disktype": "ssd"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}
    ],
    "labels": {"team": "platform"},
    "annotations": {"example.com/owner": "platform team"},
    "reservation_ttl_seconds": 7200,
    "freeze_schedules": [
        {"from_time": "03:00", "to_time": "03:01", "weekdays": [7], "timezone": "UTC"}
    ],
}
# A resource the form has no input for, beside the CPU and memory it shows.
RESOURCES = {"requests": {"cpu": "100m"}, "limits": {"ephemeral-storage": "1Gi"}}


def stored_config(server: Server, pool_id: str) -> dict[str, Any]:
    with server.api() as client:
        response = client.get(f"/api/v1/agent-pools/{pool_id}/k8s-config")
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()
    return config


def save_with_max_replicas(page: Page, pool_id: str, value: str) -> None:
    """Opens the pool's form, edits one field it shows, and saves."""
    page.goto(f"/pools/{pool_id}/config")
    max_replicas = page.get_by_label("Max replicas")
    expect(max_replicas).to_have_value("2")
    max_replicas.fill(value)
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_role("status")).to_contain_text(
        "K8s configuration updated successfully", timeout=SLOW
    )


def test_saving_the_form_keeps_every_field_it_does_not_show(
    signed_in: Page, server: Server, shot: Shots
) -> None:
    assert set(PoolConfig.model_fields) == SHOWN | set(HIDDEN), (
        "every configuration field is either on the form or has a sample value in HIDDEN"
    )
    pool_id = server.create_pool(
        "ui-config-hidden", min_replicas=0, max_replicas=2, resources=RESOURCES, **HIDDEN
    )
    before = stored_config(server, pool_id)
    assert set(HIDDEN) <= set(before)

    save_with_max_replicas(signed_in, pool_id, "3")
    shot("saved")

    after = stored_config(server, pool_id)
    assert after["max_replicas"] == 3
    assert {key: after.get(key) for key in HIDDEN} == {key: before[key] for key in HIDDEN}
    assert after["resources"] == RESOURCES
    assert after["min_replicas"] == 0


def test_a_field_newer_than_the_form_is_sent_back_as_it_was(
    signed_in: Page, server: Server
) -> None:
    """A server newer than this build of the UI, played by rewriting this pool's configuration
    answers (the only traffic these tests touch): its stored configuration carries a field the
    UI's contract does not know. The save must send that field back untouched; the real server,
    which does not know it either, is given the rest."""
    newer, value = "placement_hints", {"zone": "eu-1", "spread": ["node", "rack"]}
    pool_id = server.create_pool("ui-config-newer", min_replicas=0, max_replicas=2)
    saved: list[dict[str, Any]] = []

    def newer_server(route: Route, request: Request) -> None:
        if request.method == "GET" and request.url.endswith("/k8s-config"):
            answer = route.fetch()
            route.fulfill(response=answer, json={**answer.json(), newer: value})
            return
        body = request.post_data_json if request.method in ("PUT", "POST") else None
        if not isinstance(body, dict):
            route.continue_()
            return
        if request.method == "PUT":
            saved.append(body)
        known = {key: field for key, field in body.items() if key != newer}
        route.continue_(post_data=json.dumps(known))

    signed_in.route(
        re.compile(rf"/api/v1/agent-pools/{pool_id}/(k8s-config|pod-preview)"), newer_server
    )
    save_with_max_replicas(signed_in, pool_id, "3")

    assert len(saved) == 1
    assert saved[0].get(newer) == value, "the save dropped a field the form does not know"
    assert saved[0]["max_replicas"] == 3
    assert stored_config(server, pool_id)["max_replicas"] == 3
