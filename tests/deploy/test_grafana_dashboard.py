"""deploy/grafana/slotpool.json: a dashboard Grafana imports, whose every query names metrics that
are in slotpool's metric contract and that a real running server exports on ``/metrics``.

The metric names are read from the queries by a PromQL parser (promql-parser), not by pattern:
every vector selector of every expression, and the metric of the pool variable's
``label_values``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest

from tests.support.ports import free_port
from tests.support.server import server_process, server_settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "slotpool.json"
ADMIN = "grafana-admin-token-0123456789abcdef"

# The metric contract of issue 15 (name: Prometheus type), the one list in the tests. When the
# metrics module defines these names itself, import them from there instead of keeping a copy.
CONTRACT: dict[str, str] = {
    "slotpool_tasks": "gauge",
    "slotpool_slots": "gauge",
    "slotpool_pods": "gauge",
    "slotpool_pods_desired": "gauge",
    "slotpool_pods_outdated": "gauge",
    "slotpool_pool_frozen": "gauge",
    "slotpool_pool_max_replicas": "gauge",
    "slotpool_pool_min_replicas": "gauge",
    "slotpool_task_wait_seconds": "histogram",
    "slotpool_task_duration_seconds": "histogram",
    "slotpool_dispatch_latency_seconds": "histogram",
    "slotpool_pod_startup_seconds": "histogram",
    "slotpool_controller_pass_seconds": "histogram",
    "slotpool_scale_decisions_total": "counter",
    "slotpool_pods_created_total": "counter",
    "slotpool_pods_deleted_total": "counter",
    "slotpool_kubernetes_requests_total": "counter",
    "slotpool_kubernetes_request_seconds": "histogram",
    "slotpool_agent_registrations_total": "counter",
    "slotpool_tasks_lost_total": "counter",
    "slotpool_build_info": "gauge",
}

# The metrics of the contract that have no pool label.
WITHOUT_POOL = (
    "slotpool_controller_pass_seconds",
    "slotpool_kubernetes_request",
    "slotpool_build_info",
)

# The series a metric family of each type exports in Prometheus' text format (prometheus_client
# names a counter's family without ``_total`` in its ``# TYPE`` line).
SERIES_SUFFIXES = {
    "gauge": ("",),
    "untyped": ("",),
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# Grafana's own variables, given values a PromQL parser accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$pool": ".*"}
LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*\w+\)$")


def series_of(family: str, kind: str) -> set[str]:
    base = family.removesuffix("_total") if kind == "counter" else family
    return {base + suffix for suffix in SERIES_SUFFIXES[kind]}


def contract_series() -> set[str]:
    return {name for family, kind in CONTRACT.items() for name in series_of(family, kind)}


def exported_series(exposition: str) -> set[str]:
    """Every series name the ``# TYPE`` lines of a ``/metrics`` answer announce."""
    found: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            found |= series_of(family, kind.strip())
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # a collapsed row holds its panels


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def selectors(expression: str) -> list[tuple[str, str]]:
    """(metric, label matchers) of every vector selector of a PromQL expression."""
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    found: list[tuple[str, str]] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name is not None:
            found.append((node.name, str(node.matchers)))

    promql_parser.walk(promql_parser.parse(expression), pre_visit=visit)
    return found


def metric_names(expression: str) -> set[str]:
    return {name for name, _ in selectors(expression)}


def variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    found = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match is not None, variable["query"]
            found.add(match.group(1))
    return found


def dashboard_metrics(dashboard: dict[str, Any]) -> set[str]:
    found = set(variable_metrics(dashboard))
    for expression in expressions(dashboard):
        named = metric_names(expression)
        assert named, f"no metric in {expression!r}"
        found |= named
    return found


def test_the_dashboard_is_one_grafana_imports(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["pool"]["query"]["query"] == "label_values(slotpool_slots, pool)"
    assert variables["pool"]["includeAll"]
    assert variables["pool"]["multi"]
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
    # Every selector of a metric with a pool label follows the pool variable.
    for expression in expressions(dashboard):
        for name, matchers in selectors(expression):
            if not name.startswith(WITHOUT_POOL):
                assert 'pool=~".*"' in matchers, f"{name} in {expression!r}"


def test_every_metric_on_the_dashboard_is_in_the_contract(dashboard: dict[str, Any]) -> None:
    assert dashboard_metrics(dashboard) - contract_series() == set()


def test_every_metric_of_the_contract_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    shown = dashboard_metrics(dashboard)
    missing = {family for family, kind in CONTRACT.items() if not series_of(family, kind) & shown}
    assert missing == set()


def test_the_parser_reads_every_selector() -> None:
    """The extraction the two tests above rely on: nested, binary and matrix selectors."""
    found = metric_names(
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{pool=~"$pool"}[$__rate_interval])))'
        " / on() group_left b - max(c offset 5m)"
    )
    assert found == {"a_bucket", "b", "c"}


def test_every_metric_on_the_dashboard_is_exported_by_a_running_server(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port, local_runtime=False)
    with server_process(settings, tmp_path / "server.log", port=port) as server:
        answer = httpx.get(f"{server.url}/metrics", follow_redirects=True, timeout=30)
    assert answer.status_code == 200
    exported = exported_series(answer.text)
    assert "process_cpu_seconds_total" in exported  # the TYPE lines were read
    assert sorted(dashboard_metrics(dashboard) - exported) == []
