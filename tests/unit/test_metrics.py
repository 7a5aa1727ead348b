"""The pure parts of the metrics: a Kubernetes request's verb and resource, the start-up phases
a Pod reached, and the gauges as Prometheus reads them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slotpool.metrics import (
    KubeRequest,
    PodProgress,
    PoolGauges,
    StartupPhase,
    exposition,
    kube_request,
    startup_phases_reached,
)


@pytest.mark.parametrize(
    ("method", "path", "query", "verb", "resource"),
    [
        ("GET", "/api/v1/namespaces/ns/pods", "labelSelector=a%3Db", "list", "pods"),
        ("GET", "/api/v1/namespaces/ns/pods", "watch=true&resourceVersion=7", "watch", "pods"),
        ("GET", "/api/v1/namespaces/ns/pods/p-1", "", "get", "pods"),
        ("POST", "/api/v1/namespaces/ns/pods", "dryRun=All", "create", "pods"),
        ("DELETE", "/api/v1/namespaces/ns/pods/p-1", "", "delete", "pods"),
        ("DELETE", "/api/v1/namespaces/ns/pods", "", "deletecollection", "pods"),
        ("PUT", "/api/v1/namespaces/ns/secrets/s", "", "update", "secrets"),
        ("PATCH", "/api/v1/namespaces/ns/pods/p-1/status", "", "patch", "pods/status"),
        ("POST", "/api/v1/namespaces", "", "create", "namespaces"),
        ("GET", "/api/v1/namespaces/ns", "", "get", "namespaces"),
        ("PUT", "/api/v1/namespaces/ns/finalize", "", "update", "namespaces/finalize"),
        ("GET", "/apis/apps/v1/namespaces/ns/deployments/d", "", "get", "deployments"),
        ("GET", "/apis/apps/v1/deployments", "watch=1", "watch", "deployments"),
        ("GET", "/version", "", "get", ""),
    ],
)
def test_a_requests_verb_and_resource_are_read_as_the_api_server_names_them(
    method: str, path: str, query: str, verb: str, resource: str
) -> None:
    assert kube_request(method, path, query) == KubeRequest(verb, resource)


S, R = StartupPhase.scheduled, StartupPhase.running


@pytest.mark.parametrize(
    ("before", "now", "reached"),
    [
        (None, PodProgress("Pending", None), []),  # created, not scheduled yet
        (None, PodProgress("Pending", "node-1"), [S]),
        (None, PodProgress("Running", "localhost"), [S, R]),  # a local agent runs at once
        (PodProgress("Pending", None), PodProgress("Pending", "node-1"), [S]),
        (PodProgress("Pending", "node-1"), PodProgress("Running", "node-1"), [R]),
        (PodProgress("Pending", None), PodProgress("Running", "node-1"), [S, R]),
        (PodProgress("Pending", None), PodProgress("Running", None), [S, R]),
        (PodProgress("Running", "node-1"), PodProgress("Running", "node-1"), []),  # once only
        (PodProgress("Running", "node-1"), PodProgress("Failed", "node-1"), []),
        (PodProgress("Pending", "node-1"), PodProgress("Pending", "node-1"), []),
    ],
)
def test_each_start_up_phase_is_reached_once(
    before: PodProgress | None, now: PodProgress, reached: list[StartupPhase]
) -> None:
    assert startup_phases_reached(before, now) == reached


def test_the_gauges_are_one_exposition_with_the_process_metrics() -> None:
    k8s = PoolGauges(
        pool="builds",
        tasks={"queued": 3, "running": 2, "awaiting_approval": 0},
        slots={"idle": 0, "reserved": 1, "busy": 2},
        pods={"ready": 1, "pending": 1},
        frozen=True,
        desired=3,
        outdated=1,
        min_replicas=0,
        max_replicas=3,
    )
    static = PoolGauges(pool="static", tasks={}, slots={}, pods={}, frozen=False)
    text = exposition([k8s, static]).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("slotpool_tasks", (("pool", "builds"), ("status", "queued")))] == 3
    assert samples[("slotpool_slots", (("pool", "builds"), ("state", "reserved")))] == 1
    assert samples[("slotpool_pods", (("pool", "builds"), ("state", "pending")))] == 1
    assert samples[("slotpool_pods_desired", (("pool", "builds"),))] == 3
    assert samples[("slotpool_pods_outdated", (("pool", "builds"),))] == 1
    assert samples[("slotpool_pool_frozen", (("pool", "builds"),))] == 1
    assert samples[("slotpool_pool_max_replicas", (("pool", "builds"),))] == 3
    assert samples[("slotpool_pool_min_replicas", (("pool", "builds"),))] == 0
    # A static pool has no Pods of slotpool's: no desired count, no replica bounds.
    assert samples[("slotpool_pool_frozen", (("pool", "static"),))] == 0
    assert ("slotpool_pods_desired", (("pool", "static"),)) not in samples
    assert ("slotpool_pool_max_replicas", (("pool", "static"),)) not in samples
    assert any(name.startswith("process_") for name, _ in samples)
    assert text.count("# TYPE slotpool_tasks gauge") == 1
