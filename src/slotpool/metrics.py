"""slotpool's Prometheus metrics: every histogram and counter, defined once per process.

The names and labels are a contract (the Grafana dashboard in ``deploy/`` is built on them; the
README's "Metrics" section lists them). Histograms and counters live in prometheus_client's
process-wide registry and are observed by the process that did the work; the per-pool gauges are
not kept here but read from the database at scrape time (``services/stats.py``), so every replica
exports the same values. This module is imported once per process, however many apps a process
starts (the tests start many), so nothing is registered twice.

The ``pool`` label is the pool's name. Where only a pool's id is at hand, ``pool_names`` gives
the name last seen in this process (kept current by every pool read that observes something and
by each scrape); a pool not seen yet is labelled with its id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from slotpool import __version__
from slotpool.domain.pods import EndCause
from slotpool.domain.transitions import TaskChange

# Seconds: from a few milliseconds (a dispatch) to an hour (a long task, a slow Pod start).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_LONG = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)

TASK_WAIT = Histogram(
    "slotpool_task_wait_seconds",
    "Queued (or approved back into the queue) to started (given a slot).",
    ["pool"],
    buckets=(*_BUCKETS, 1800, 3600),
)
TASK_DURATION = Histogram(
    "slotpool_task_duration_seconds",
    "Started to a final state (succeeded, failed, cancelled, expired, lost).",
    ["pool", "status"],
    buckets=_LONG,
)
DISPATCH_LATENCY = Histogram(
    "slotpool_dispatch_latency_seconds",
    "A step given a slot (or approved in the slot it kept) to handed over in an agent's claim.",
    ["pool"],
    buckets=_BUCKETS,
)
POD_STARTUP = Histogram(
    "slotpool_pod_startup_seconds",
    "A Pod's creation (as recorded) to a start-up phase: scheduled, running, registered.",
    ["pool", "phase"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
CONTROLLER_PASS = Histogram(
    "slotpool_controller_pass_seconds",
    "One controller pass over one pool (inventory, plan, execute, record).",
    buckets=_BUCKETS,
)
SCALE_DECISIONS = Counter(
    "slotpool_scale_decisions",
    "Controller decisions recorded as pool events: actions and holds, by reason.",
    ["pool", "action", "reason"],
)
PODS_CREATED = Counter("slotpool_pods_created", "Pods the controller created.", ["pool"])
PODS_DELETED = Counter(
    "slotpool_pods_deleted",
    "Pods whose record ended, by end cause (deliberate or on their own).",
    ["pool", "cause"],
)
KUBERNETES_REQUESTS = Counter(
    "slotpool_kubernetes_requests",
    "Requests to the Kubernetes API server, by verb, resource and HTTP status ('error': none).",
    ["verb", "resource", "code"],
)
KUBERNETES_LATENCY = Histogram(
    "slotpool_kubernetes_request_seconds",
    "Kubernetes API request latency (to the response's headers; a watch: until it opened).",
    ["verb", "resource"],
    buckets=_BUCKETS,
)
AGENT_REGISTRATIONS = Counter(
    "slotpool_agent_registrations", "First registrations of agents.", ["pool"]
)
TASKS_LOST = Counter("slotpool_tasks_lost", "Tasks lost, by reason.", ["pool", "reason"])
BUILD_INFO = Gauge("slotpool_build_info", "slotpool's version; always 1.", ["version"])
BUILD_INFO.labels(version=__version__).set(1)

STEP_GONE = "step_gone"  # the reason of a task lost because its agent came back without its step


class PoolNames:
    """Pool id -> name, as last seen in this process (the ``pool`` label is the name)."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def note(self, pool_id: str, name: str) -> None:
        self._names[pool_id] = name

    def note_all(self, names: Iterable[tuple[str, str]]) -> None:
        self._names.update(names)

    def label(self, pool_id: str) -> str:
        return self._names.get(pool_id, pool_id)


pool_names = PoolNames()


def seconds_between(start: datetime | None, end: datetime) -> float | None:
    """The time from ``start`` to ``end``; None without a start. Never negative (the clocks of
    two replicas may disagree a little)."""
    return None if start is None else max(0.0, (end - start).total_seconds())


def observe(histogram: Histogram, seconds: float | None, **labels: str) -> None:
    if seconds is not None:
        histogram.labels(**labels).observe(seconds)


def task_ended(change: TaskChange) -> None:
    """A task reached a final state: its duration since it started (if it did)."""
    observe(
        TASK_DURATION,
        seconds_between(change.started_at, change.now),
        pool=pool_names.label(change.pool_id),
        status=change.to.value,
    )


def tasks_lost(pool_id: str, reason: str, count: int = 1) -> None:
    if count:
        TASKS_LOST.labels(pool=pool_names.label(pool_id), reason=reason).inc(count)


def pod_ended(pool_id: str, cause: EndCause, *, lost: int) -> None:
    """A Pod's record ended (``cause``), and ``lost`` tasks with it (the same reason)."""
    PODS_DELETED.labels(pool=pool_names.label(pool_id), cause=cause.value).inc()
    tasks_lost(pool_id, cause.value, lost)


# -- Pod start-up -------------------------------------------------------------------------------


class StartupPhase(StrEnum):
    scheduled = "scheduled"  # the Pod has a Node
    running = "running"  # its containers run
    registered = "registered"  # its agent registered


@dataclass(frozen=True)
class PodProgress:
    """What the books said of a Pod's start: its runtime phase and Node."""

    phase: str | None
    node: str | None


def startup_phases_reached(before: PodProgress | None, now: PodProgress) -> list[StartupPhase]:
    """The start-up phases the Pod reached since ``before`` (None: it was just created, so any
    phase it reports now is reached now). A Pod that runs has been scheduled, even when the
    runtime names no Node (the local runtime)."""
    running = now.phase == "Running"
    scheduled = running or now.node is not None
    was_running = before is not None and before.phase == "Running"
    was_scheduled = before is not None and (was_running or before.node is not None)
    reached = []
    if scheduled and not was_scheduled:
        reached.append(StartupPhase.scheduled)
    if running and not was_running:
        reached.append(StartupPhase.running)
    return reached


def pod_started(
    pool_id: str, created_at: datetime, phases: Iterable[StartupPhase], *, now: datetime
) -> None:
    for phase in phases:
        observe(
            POD_STARTUP,
            seconds_between(created_at, now),
            pool=pool_names.label(pool_id),
            phase=phase.value,
        )


# -- Kubernetes requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeRequest:
    verb: str
    resource: str


_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def kube_request(method: str, path: str, query: str = "") -> KubeRequest:
    """The Kubernetes verb and resource of an API request, from its method and URL, as the API
    server's audit log names them: ``GET /api/v1/namespaces/ns/pods?watch=true`` is a ``watch``
    of ``pods``, ``GET .../pods/name`` a ``get``, ``GET .../pods`` a ``list``; a subresource
    is ``pods/status``. Paths outside the resource API (``/version``) have resource ``""``."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]  # /api/v1/...
    elif parts[:1] == ["apis"]:
        rest = parts[3:]  # /apis/group/version/...
    else:
        return KubeRequest(method.lower(), "")
    if rest[:1] == ["namespaces"] and len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        rest = rest[2:]  # a namespaced resource (as the API server's request info reads it)
    resource = rest[0] if rest else ""
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        watching = any(p in ("watch=true", "watch=1") for p in query.split("&"))
        verb = "watch" if watching else ("get" if named else "list")
    elif method == "DELETE" and not named:
        verb = "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return KubeRequest(verb, resource)


# -- the per-pool gauges, read from the database at scrape time ---------------------------------


@dataclass(frozen=True)
class PoolGauges:
    """One pool's gauges as the database says now (None: the pool has no Pods of its own, a
    static pool, or no configuration yet)."""

    pool: str  # its name
    tasks: Mapping[str, int]  # status -> tasks (queued, running, awaiting_approval)
    slots: Mapping[str, int]  # state -> slots of Pods not ended (idle, reserved, busy)
    pods: Mapping[str, int]  # state -> Pods recorded
    frozen: bool
    desired: int | None = None
    outdated: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None


def gauge_families(pools: Iterable[PoolGauges]) -> list[Metric]:
    """The gauges of every pool, as prometheus_client renders them."""

    def family(name: str, text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"slotpool_{name}", text, labels=["pool", *labels])

    tasks = family("tasks", "Open tasks by status.", ["status"])
    slots = family("slots", "Slots of Pods not ended, by state.", ["state"])
    pods = family("pods", "Pods recorded, by state.", ["state"])
    desired = family("pods_desired", "Pods the queue and the used slots ask for, in bounds.")
    outdated = family("pods_outdated", "Pods not ended built from an older configuration.")
    frozen = family("pool_frozen", "1 while a freeze window is in force.")
    most = family("pool_max_replicas", "The pool's max_replicas.")
    least = family("pool_min_replicas", "The pool's min_replicas.")
    for gauges in pools:
        name = gauges.pool
        for by_key, values in ((tasks, gauges.tasks), (slots, gauges.slots), (pods, gauges.pods)):
            for key, count in values.items():
                by_key.add_metric([name, key], count)
        frozen.add_metric([name], 1 if gauges.frozen else 0)
        for one, value in (
            (desired, gauges.desired),
            (outdated, gauges.outdated),
            (most, gauges.max_replicas),
            (least, gauges.min_replicas),
        ):
            if value is not None:
                one.add_metric([name], value)
    return [tasks, slots, pods, desired, outdated, frozen, most, least]


class _Scrape:
    """The process's registry and this scrape's gauges, rendered as one exposition."""

    def __init__(self, gauges: Iterable[Metric]) -> None:
        self._gauges = list(gauges)

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        yield from self._gauges


def exposition(pools: Iterable[PoolGauges]) -> bytes:
    """The text ``/metrics`` answers (``CONTENT_TYPE_LATEST``): this process's histograms and
    counters, the process_ and python_ defaults, and the pools' gauges."""
    return generate_latest(_Scrape(gauge_families(pools)))
