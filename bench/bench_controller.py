"""The pool controller (``slotpool.controller``): how fast it reacts, how it
copes with a burst on a real cluster, and what one resync pass over many pools costs.

Four parts, each with a baseline from the same run:

1. **reaction**: an in-process server (``tests/live.py``, SQLite in a temporary directory,
   ``local_runtime=False``) whose runtimes are replaced by ``FakeRuntime``, a recording
   ``PodRuntime``: it stamps ``time.perf_counter()`` when ``create_agent`` is called and reports
   every Pod ``Running``, but no agent ever registers, so a k8s pool with ``slots_per_pod=1``,
   ``min_replicas=0`` needs a new Pod for every queued task. N tasks are submitted one after the
   other and each one is timed from ``POST /api/v1/tasks`` (sent, and returned) to the controller's
   ``create_agent`` call. The runtime is injected by replacing ``slotpool.api.app.build_runtimes``
   in this process while the server starts (the app factory has no other way in); the pool is
   written to the database before the server starts, so its worker exists from the start. Run
   with ``pod_sync_seconds=30`` (only the event wake-up can trigger the create) and with the
   default 1.0. Then a pool created through the API while the server runs gets one task, and the
   time to its first ``create_agent`` is taken (the controller only starts a worker for a pool when
   it lists the pools, every ``pod_sync_seconds``).
2. **burst**: the test cluster of ``tests/k8s_env.py`` (etcd, kube-apiserver, scheduler,
   controller-manager, kwok, 3 fake 4-CPU Nodes of 110 Pods). ``controller`` rounds: a server with
   ``kubeconfig`` and ``kube_requests_per_second`` (50 by default) gets an empty k8s pool
   (4 slots per Pod, min 0, max 100, 10m CPU and 16Mi requested), then 400 tasks at once (16
   connections); the time is from the first POST to the 100th Pod of the pool ``Running`` (kwok
   plays the kubelet; the tasks stay queued, no agent runs). ``direct`` rounds: 100 bare Pods
   from the same manifest builder, created with a lightkube ``AsyncClient`` behind the runtime's
   ``TokenBucket`` at the same rate (``bench_k8s.creator``), from the first create to the 100th
   Pod ``Running``. Rounds alternate (A B, B A, ...) after one warm-up each; everything is deleted
   between rounds. One more controller round is instrumented (wall time of the controller's
   steps, timeline of its passes) and one runs under cProfile in the server's thread.
2b. **burst-queued**: the same cluster (one of its own) and direct rounds, but the controller
   alone: a server with ``pod_sync_seconds=3600`` (no periodic pass), a new empty pool per round,
   its first pass awaited and one ``sync-deployment`` with the queue empty; then the tasks are
   inserted in one transaction by the bench's own ``Store`` (rows shaped as
   ``TaskService.submit`` builds them; the server is not notified), it is asserted that the pool
   has no Pod yet, and the clock runs from one ``POST .../sync-deployment`` (a controller pass
   at once) to the 100th Pod ``Running``; the pool's events give its creating passes.
3. **resync**: in-process, no server: a ``Store`` on SQLite and on PostgreSQL
   (``tests/pg_server.py``) with 1,000 k8s pools, each with 10 registered Pods (the agents'
   ``register``) that ``FakeRuntime`` reports ``Running``; one ``reconcile(pool,
   check_secret=False)`` per pool, sequentially (a first pass, whose Secret check is due, and a
   steady one) and in ``asyncio.gather`` batches, against the same number of plain
   ``uow.pods.of_pool()`` reads. Wall and CPU time (``time.process_time``; PostgreSQL's server
   processes are counted apart), RSS before/after and its peak (``VmHWM``, reset through
   ``/proc/self/clear_refs``), and the tracemalloc peak in a separate pass. Then the same pass
   for one pool whose 10 live Pods come with 0, 100 and 1,000 ended Pods' rows.

Results are printed and written to ``bench/CONTROLLER.md`` with the machine's details. Run it
with ``scripts/bench controller`` or ``.venv/bin/python bench/bench_controller.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import cProfile
import io
import itertools
import json
import math
import os
import pstats
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import httpx
import psycopg
import sqlalchemy
from lightkube import AsyncClient, KubeConfig

from bench_api import ROOT, cpu_check_ms, start_postgres
from bench_dispatch import (
    busy_processes,
    code_fingerprint,
    cpu_seconds,
    parent_pid,
    server_processes,
)
from bench_k8s import (
    NAMESPACE,
    CpuReading,
    CpuUse,
    RunningWatch,
    creator,
    delete_all,
    prepare_namespace,
    quantile,
    repo_importable,
)
from bench_k8s import machine as k8s_machine
from slotpool.api import app as app_module
from slotpool.api.app import build_services
from slotpool.clock import utc_now
from slotpool.controller.executor import Executor
from slotpool.controller.inventory import Observer
from slotpool.controller.reconciler import Reconciler
from slotpool.controller.record import Recorder
from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.manifest import (
    POOL_LABEL,
    PodContext,
    build_pod_manifest,
    pod_manifest,
    token_secret_name,
)
from slotpool.domain.pods import PodState
from slotpool.domain.pools import Pool
from slotpool.domain.tasks import TaskSubmit
from slotpool.logs import configure_logging
from slotpool.runtime.base import (
    Capability,
    PodRuntime,
    RuntimePod,
    RuntimeRegistry,
    SecretOutcome,
)
from slotpool.runtime.kubernetes import FIELD_MANAGER, KubernetesRuntime
from slotpool.services.dispatch import Dispatcher
from slotpool.services.ports import RuntimeFailed, SyncReport
from slotpool.services.secret_tokens import SecretTokens
from slotpool.services.tasks import TaskService, new_task_row
from slotpool.settings import Settings
from slotpool.store.db import sync_url
from slotpool.store.migrate import upgrade
from slotpool.store.models import PodRow, SlotRow
from slotpool.store.pods import PodRepository
from slotpool.store.uow import Store

if TYPE_CHECKING:
    from tests.k8s_env import K8sTestEnv
    from tests.live import ServerProcess

DEFAULT_OUTPUT = ROOT / "bench" / "CONTROLLER.md"
ADMIN = "bench-controller-admin-token-0123456789"
TASKS = "/api/v1/tasks"
POOLS = "/api/v1/agent-pools"
IMAGE = "ghcr.io/acme/agent:1.4"
GOALS = {"reaction_ms": 200.0, "burst_ratio": 1.25}
REACTION_CONFIG: dict[str, Any] = {
    "image": IMAGE,
    "slots_per_pod": 1,
    "min_replicas": 0,
    "max_replicas": 1000,
    "namespace": "bench-reaction",
}
BURST_CONFIG: dict[str, Any] = {
    "image": IMAGE,
    "resources": {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "50m", "memory": "64Mi"},
    },
    "slots_per_pod": 4,
    "min_replicas": 0,
    "max_replicas": 100,
    "namespace": NAMESPACE,
}
RESYNC_CONFIG: dict[str, Any] = {
    "image": IMAGE,
    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    "slots_per_pod": 4,
    "min_replicas": 10,
    "max_replicas": 20,
    "namespace": "bench-resync",
}
PUBLIC_URL = "http://slotpool.example:8080"
RUNNING_TIMEOUT = 120.0
SERVER_PASS_TIMEOUT = 30.0


def percent(values: Sequence[float], q: int) -> float:
    return quantile(values, q) if len(values) > 1 else (values[0] if values else math.nan)


def ms_stats(values: Sequence[float]) -> str:
    """p50 / p90 / p99 / max of a list of milliseconds, as table cells."""
    if not values:
        return "- | - | - | -"
    cells = [percent(values, 50), percent(values, 90), percent(values, 99), max(values)]
    return " | ".join(f"{v:.1f}" for v in cells)


# -- the recording runtime -------------------------------------------------------------------------


class FakeRuntime:
    """A ``PodRuntime`` that keeps its Pods in memory, reports them all ``Running`` and records
    when ``create_agent`` was called (``time.perf_counter()``, so other threads can compare)."""

    name = "fake"
    capabilities = frozenset({Capability.dry_run})

    def __init__(self) -> None:
        self.pods_of: defaultdict[str, dict[str, RuntimePod]] = defaultdict(dict)
        self.tokens: dict[str, str] = {}
        self.created: defaultdict[str, list[float]] = defaultdict(list)
        self.lists: Counter[str] = Counter()
        self.token_reads = 0
        self._serial = itertools.count(1)
        self._changed = threading.Condition()

    def add(self, pool_id: str, name: str, config_hash: str | None, created_at: datetime) -> None:
        self.pods_of[pool_id][name] = RuntimePod(
            name=name,
            namespace="bench",
            pool_id=pool_id,
            config_hash=config_hash,
            phase="Running",
            node="fake-node",
            reason=None,
            message=None,
            created_at=created_at,
            deleting=False,
            ip="10.0.0.1",
        )

    def wait(self, check: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(check, timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    async def prepare(self, namespace: str) -> None:
        return None

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        self.token_reads += 1
        return self.tokens.get(pool_id)

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        outcome: SecretOutcome = "updated" if pool_id in self.tokens else "created"
        self.tokens[pool_id] = token
        return outcome

    async def pods(self, namespace: str, pool_id: str) -> list[RuntimePod]:
        self.lists[pool_id] += 1
        self._notify()
        return list(self.pods_of[pool_id].values())

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        return [pod for pods in self.pods_of.values() for pod in pods.values()]

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        self.tokens.pop(pool_id, None)

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        called = time.perf_counter()
        pool_id = spec.pool_id
        name = f"{spec.name_prefix}{next(self._serial):05d}"
        self.add(pool_id, name, spec.config_hash, datetime.now(UTC))
        with self._changed:
            self.created[pool_id].append(called)
            self._changed.notify_all()
        return self.pods_of[pool_id][name]

    async def delete_pod(self, namespace: str, name: str) -> None:
        for pods in self.pods_of.values():
            pods.pop(name, None)

    async def dry_run(self, spec: AgentSpec) -> dict[str, Any]:
        return pod_manifest(spec)

    async def close(self) -> None:
        return None


def runtimes_replaced(
    build: Callable[[Settings], RuntimeRegistry],
) -> contextlib.AbstractContextManager[Any]:
    """``create_app``'s lifespan calls ``build_runtimes(settings)``: replaced while it runs."""
    return mock.patch.object(app_module, "build_runtimes", build)


def only_runtime(runtime: PodRuntime) -> RuntimeRegistry:
    return RuntimeRegistry({PoolType.k8s: runtime})


def server_settings(work: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{work}/slotpool.db",
        "data_dir": work / "data",
        "admin_token": ADMIN,
        "public_url": PUBLIC_URL,
        "local_runtime": False,
        "log_level": "warning",
        **overrides,
    }
    return Settings(**values)


def api_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)


# -- 1. reaction -----------------------------------------------------------------------------------


@dataclass
class Reaction:
    resync: float
    after_return_ms: list[float] = field(default_factory=list)
    after_send_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    new_pool_ms: float | None = None
    seconds: float = 0.0
    others_cpu: float = 0.0


async def seed_pool(settings: Settings, name: str, raw: dict[str, Any]) -> str:
    store = Store(settings.database_url)
    try:
        services = build_services(store, settings, utc_now)
        config = parse_config(copy.deepcopy(raw), pool_type=PoolType.k8s)
        pool = await services.pools.create(
            name=name, description="", pool_type=PoolType.k8s, config=config, by="bench"
        )
        return pool.pool_id
    finally:
        await store.close()


def run_reaction(resync: float, samples: int, warmups: int) -> Reaction:
    from tests.live import live_server

    result = Reaction(resync)
    work = Path(tempfile.mkdtemp(prefix="slotpool-bench-reaction-"))
    fake = FakeRuntime()
    settings = server_settings(work, pod_sync_seconds=resync)
    started = time.monotonic()
    busy_before = machine_busy()
    cpu_before = time.process_time()
    try:
        upgrade(settings.database_url)
        pool_id = asyncio.run(seed_pool(settings, "reaction", REACTION_CONFIG))
        with (
            runtimes_replaced(lambda _settings: only_runtime(fake)),
            live_server(settings) as url,
            api_client(url) as api,
        ):
            if not fake.wait(lambda: fake.lists[pool_id] > 0, SERVER_PASS_TIMEOUT):
                raise RuntimeError("the controller made no pass over the seeded pool")
            for index in range(warmups + samples):
                before = len(fake.created[pool_id])
                sent = time.perf_counter()
                response = api.post(TASKS, json={"pool_id": pool_id, "command": "true"})
                returned = time.perf_counter()
                if response.status_code != 201:
                    raise RuntimeError(f"submit: HTTP {response.status_code}: {response.text}")
                done = fake.wait(partial(created_more, fake, pool_id, before), resync + 10)
                if index < warmups:
                    continue
                if not done:
                    result.timeouts += 1
                    continue
                at = fake.created[pool_id][before]
                result.after_return_ms.append((at - returned) * 1000)
                result.after_send_ms.append((at - sent) * 1000)
                result.post_ms.append((returned - sent) * 1000)
            result.new_pool_ms = new_pool_reaction(api, fake, resync)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - started
    result.others_cpu = max(0.0, machine_busy() - busy_before - (time.process_time() - cpu_before))
    return result


def created_more(fake: FakeRuntime, pool_id: str, before: int) -> bool:
    return len(fake.created[pool_id]) > before


def new_pool_reaction(api: httpx.Client, fake: FakeRuntime, resync: float) -> float | None:
    """A pool created while the server runs, one task at once: ms to its first ``create_agent``."""
    body = {"name": "reaction-new", "pool_type": "k8s", "k8s_config": REACTION_CONFIG}
    response = api.post(POOLS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"create pool: HTTP {response.status_code}: {response.text}")
    pool_id: str = response.json()["pool_id"]
    sent = time.perf_counter()
    api.post(TASKS, json={"pool_id": pool_id, "command": "true"}).raise_for_status()
    if not fake.wait(lambda: bool(fake.created[pool_id]), resync + 10):
        return None
    return (fake.created[pool_id][0] - sent) * 1000


def machine_busy() -> float:
    from bench_dispatch import machine_busy_seconds

    return machine_busy_seconds()


# -- 2. burst on the test cluster ------------------------------------------------------------------


class PodWatch(RunningWatch):
    """``RunningWatch`` that also records when each Pod was first seen at all (its creation)."""

    def __init__(self, env: K8sTestEnv, namespace: str) -> None:
        super().__init__(env, namespace)
        self.added: dict[str, float] = {}

    def _watch(self, client: httpx.Client, version: str) -> str:
        params = {
            "watch": "true",
            "labelSelector": "app.kubernetes.io/managed-by=slotpool",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "5",
        }
        with client.stream("GET", self._path, params=params) as response:
            response.raise_for_status()
            self._ready.set()
            for line in response.iter_lines():
                if not line:
                    continue
                seen = time.monotonic()
                event = json.loads(line)
                pod = event["object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {pod.get('message')}")
                version = pod["metadata"]["resourceVersion"]
                self.events += 1
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                name = pod["metadata"]["name"]
                self.added.setdefault(name, seen)
                if (pod.get("status") or {}).get("phase") == "Running":
                    self.running.setdefault(name, seen)
        return version

    def of_pool(self, pool_id: str) -> tuple[list[float], list[float]]:
        prefix = f"slotpool-{pool_id}-"
        added = [t for name, t in self.added.items() if name.startswith(prefix)]
        running = [t for name, t in self.running.items() if name.startswith(prefix)]
        return sorted(added), sorted(running)


@dataclass
class BurstRound:
    way: str
    index: int
    all_running: float  # s: first POST (or create) to the last Pod Running
    first_added: float  # s: to the first Pod seen
    last_added: float  # s: to the last Pod seen (every create answered)
    submit_wall: float  # s: first POST to the last POST answered (controller only)
    pods_created: int
    process_cpu: float
    usage: CpuUse
    passes: list[dict[str, Any]] = field(default_factory=list)
    sync_created: int = 0  # queued: Pods the timed sync-deployment's own pass created
    insert_s: float = 0.0  # queued: the one transaction that queued the tasks (not timed)
    actions: dict[str, int] = field(default_factory=dict)  # queued: the pool's events


@dataclass
class Instrumented:
    """Wall time of the controller's steps in one round (seconds, per call)."""

    calls: dict[str, list[float]]
    passes: list[dict[str, float]]
    submit_wall: float
    all_running: float


@dataclass
class BurstResult:
    rate: float
    tasks: int
    pods: int
    node_pods_capacity: list[str]
    rounds: list[BurstRound] = field(default_factory=list)
    instrumented: Instrumented | None = None
    profile: str = ""
    profile_own: list[tuple[str, int, float, float]] = field(default_factory=list)
    profiled_all_running: float = 0.0
    cluster_start_s: float = 0.0
    server_version: str = "?"

    def of(self, way: str) -> list[BurstRound]:
        return [r for r in self.rounds if r.way == way and r.index > 0]


class ServerLoop:
    """Captures the server thread's event loop while the app starts (to profile that thread)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._original = app_module.build_runtimes

    def build(self, settings: Settings) -> RuntimeRegistry:
        self.loop = asyncio.get_running_loop()
        return self._original(settings)

    def run(self, call: Callable[[], object]) -> None:
        """Run ``call`` in the server's thread and wait for it."""
        assert self.loop is not None
        done = threading.Event()

        def step() -> None:
            try:
                call()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(step)
        if not done.wait(10):
            raise RuntimeError("the server's loop did not run the call")


def create_pool(api: httpx.Client, name: str) -> str:
    body = {"name": name, "pool_type": "k8s", "k8s_config": BURST_CONFIG}
    response = api.post(POOLS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"create pool: HTTP {response.status_code}: {response.text}")
    pool_id: str = response.json()["pool_id"]
    return pool_id


def wait_for_worker(env: K8sTestEnv, pool_id: str) -> None:
    """The controller's first pass over a pool writes its token Secret: then its worker runs."""
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets/{token_secret_name(pool_id)}"
    deadline = time.monotonic() + SERVER_PASS_TIMEOUT
    while env.client.get(path).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no controller pass over {pool_id} in {SERVER_PASS_TIMEOUT} s")
        time.sleep(0.05)


async def submit_all(url: str, pool_id: str, tasks: int, connections: int) -> tuple[float, float]:
    """``tasks`` POSTs over ``connections`` warm connections; (first sent, last answered)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:
        await asyncio.gather(*(client.get("/healthz") for _ in range(connections)))
        gate = asyncio.Semaphore(connections)

        async def one(i: int) -> None:
            async with gate:
                body = {"pool_id": pool_id, "command": "true", "name": f"burst-{i}"}
                response = await client.post(TASKS, json=body)
                if response.status_code != 201:
                    raise RuntimeError(f"submit: HTTP {response.status_code}: {response.text}")

        began = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(tasks)))
        return began, time.monotonic()


def wait_running(watch: PodWatch, pool_id: str, pods: int) -> tuple[list[float], list[float]]:
    deadline = time.monotonic() + RUNNING_TIMEOUT
    while True:
        watch.check()
        added, running = watch.of_pool(pool_id)
        if len(running) >= pods:
            return added, running
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(running)} of {pods} Pods Running after {RUNNING_TIMEOUT} s")
        time.sleep(0.01)


def pool_passes(api: httpx.Client, pool_id: str, began_wall: float) -> list[dict[str, Any]]:
    """The pool's create_pods events (one per pass that created), oldest first."""
    items = api.get(f"{POOLS}/{pool_id}/events", params={"limit": 500}).json()["items"]
    passes = []
    for event in reversed(items):
        if event["action"] != "create_pods":
            continue
        at = datetime.fromisoformat(event["at"]).timestamp() - began_wall
        message: str = event["message"]
        passes.append(
            {
                "at": at,
                "queued": event["inputs"].get("inputs", {}).get("queued"),
                "created": int(message.rsplit("creating ", 1)[-1].split()[0]),
            }
        )
    return passes


class Usage:
    """CPU between ``start`` and ``stop``: this process and the server process together count as
    the process's (the others' share no longer includes the server)."""

    def __init__(self, env: K8sTestEnv, server: ServerProcess) -> None:
        self._env = env
        self._server = server
        self._before = CpuReading.now(env)
        self._server_before = server.cpu_seconds()

    def stop(self) -> CpuUse:
        usage = CpuUse.between(self._before, CpuReading.now(self._env))
        server = self._server.cpu_seconds() - self._server_before
        return CpuUse(usage.process + server, usage.cluster, max(0.0, usage.others - server))


def controller_round(
    env: K8sTestEnv,
    api: httpx.Client,
    server: ServerProcess,
    watch: PodWatch,
    runner: asyncio.Runner,
    args: argparse.Namespace,
    index: int,
) -> BurstRound:
    pool_id = create_pool(api, f"burst-{index}-{time.monotonic_ns()}")
    wait_for_worker(env, pool_id)
    measured = Usage(env, server)
    began_wall = time.time()
    began, submitted = runner.run(submit_all(server.url, pool_id, args.tasks, args.connections))
    added, running = wait_running(watch, pool_id, args.pods)
    usage = measured.stop()
    time.sleep(0.5)  # a scale-up storm would show as more Pods than wanted
    added, _ = watch.of_pool(pool_id)
    passes = pool_passes(api, pool_id, began_wall)
    finish_controller_round(api, env, pool_id)
    return BurstRound(
        way="controller",
        index=index,
        all_running=running[args.pods - 1] - began,
        first_added=added[0] - began,
        last_added=added[min(len(added), args.pods) - 1] - began,
        submit_wall=submitted - began,
        pods_created=len(added),
        process_cpu=usage.process,
        usage=usage,
        passes=passes,
    )


def finish_controller_round(api: httpx.Client, env: K8sTestEnv, pool_id: str) -> None:
    """Delete the pool (its tasks go with it), let its worker notice, then delete its Pods."""
    api.delete(f"{POOLS}/{pool_id}", params={"force": "true"}).raise_for_status()
    time.sleep(1.5)
    delete_all(env)


def direct_round(
    env: K8sTestEnv,
    client: AsyncClient,
    watch: PodWatch,
    runner: asyncio.Runner,
    args: argparse.Namespace,
    index: int,
) -> BurstRound:
    pool_id = f"direct-{index}-{time.monotonic_ns() % 10**9}"
    config = parse_config(copy.deepcopy(BURST_CONFIG), pool_type=PoolType.k8s)
    context = PodContext(pool_id, control_plane_url=PUBLIC_URL, default_namespace=NAMESPACE)
    manifest = build_pod_manifest(config, context)
    create = creator(client, "direct", args.rate, [copy.deepcopy(manifest)] * args.pods)

    async def all_at_once() -> float:
        began = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(args.pods)))
        return began

    before = CpuReading.now(env)
    began = runner.run(all_at_once())
    added, running = wait_running(watch, pool_id, args.pods)
    usage = CpuUse.between(before, CpuReading.now(env))
    delete_all(env)
    return BurstRound(
        way="direct",
        index=index,
        all_running=running[args.pods - 1] - began,
        first_added=added[0] - began,
        last_added=added[-1] - began,
        submit_wall=0.0,
        pods_created=len(added),
        process_cpu=usage.process,
        usage=usage,
    )


@contextlib.contextmanager
def instrumented(
    calls: defaultdict[str, list[float]], passes: list[dict[str, float]]
) -> Iterator[None]:
    """Time (wall, per call) the controller's steps and the request handlers around them."""
    targets: list[tuple[type, str]] = [
        (Reconciler, "_pass"),
        (SecretTokens, "ensure"),
        (Observer, "_book"),
        (Observer, "_observe"),
        (Executor, "apply"),
        (Executor, "create"),
        (Executor, "_record_created"),
        (Recorder, "write"),
        (KubernetesRuntime, "pods"),
        (KubernetesRuntime, "create_pod"),
        (KubernetesRuntime, "prepare"),
        (TaskService, "submit"),
        (Dispatcher, "dispatch"),
        (Dispatcher, "_one_batch"),
        (PodRepository, "observed"),
        (PodRepository, "of_pool"),
    ]
    originals = [(cls, name, getattr(cls, name)) for cls, name in targets]

    def wrap(name: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(self, *args, **kwargs)
            finally:
                end = time.perf_counter()
                calls[name].append(end - start)
                if name.endswith("Executor.apply"):
                    decided = args[0]
                    passes.append(
                        {
                            "act_start": start,
                            "act_end": end,
                            "queued": float(decided.inputs["queued"]),
                            "capacity": float(decided.capacity_pods),
                            "created": float(decided.created),
                        }
                    )
                elif name.endswith("._pass"):
                    passes.append({"pass_start": start, "pass_end": end})

        return timed

    for cls, name, original in originals:
        setattr(cls, name, wrap(f"{cls.__name__}.{name}", original))
    try:
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def instrumented_round(
    env: K8sTestEnv,
    api: httpx.Client,
    url: str,
    watch: PodWatch,
    runner: asyncio.Runner,
    args: argparse.Namespace,
) -> Instrumented:
    pool_id = create_pool(api, f"burst-instrumented-{time.monotonic_ns()}")
    wait_for_worker(env, pool_id)
    calls: defaultdict[str, list[float]] = defaultdict(list)
    raw: list[dict[str, float]] = []
    with instrumented(calls, raw):
        began_perf = time.perf_counter()
        began, submitted = runner.run(submit_all(url, pool_id, args.tasks, args.connections))
        _, running = wait_running(watch, pool_id, args.pods)
    finish_controller_round(api, env, pool_id)
    passes: list[dict[str, float]] = []
    current: dict[str, float] = {}
    for entry in raw:  # the Executor.apply record comes before the _pass record that contains it
        current.update(entry)
        if "pass_end" in entry:
            passes.append({k: v - began_perf if k.endswith(("start", "end")) else v
                           for k, v in current.items()})  # fmt: skip
            current = {}
    return Instrumented(
        calls=dict(calls),
        passes=passes,
        submit_wall=submitted - began,
        all_running=running[args.pods - 1] - began,
    )


def profiled_round(
    env: K8sTestEnv,
    api: httpx.Client,
    url: str,
    watch: PodWatch,
    runner: asyncio.Runner,
    server: ServerLoop,
    args: argparse.Namespace,
) -> tuple[cProfile.Profile, float]:
    pool_id = create_pool(api, f"burst-profiled-{time.monotonic_ns()}")
    wait_for_worker(env, pool_id)
    profiler = cProfile.Profile()
    server.run(profiler.enable)
    try:
        began, _ = runner.run(submit_all(url, pool_id, args.tasks, args.connections))
        _, running = wait_running(watch, pool_id, args.pods)
    finally:
        server.run(profiler.disable)
    finish_controller_round(api, env, pool_id)
    return profiler, running[args.pods - 1] - began


WAYS = ("controller", "direct", "static")


def burst_schedule(rounds: int, ways: Sequence[str] = WAYS) -> list[tuple[int, str]]:
    order: list[tuple[int, str]] = []
    for index in range(1, rounds + 1):
        order += [(index, way) for way in (ways if index % 2 else ways[::-1])]
    return order


def static_round(
    env: K8sTestEnv,
    api: httpx.Client,
    server: ServerProcess,
    runner: asyncio.Runner,
    args: argparse.Namespace,
    index: int,
) -> BurstRound:
    """The same POSTs into a static pool of the same server: submission and dispatch without
    any controller pass (static pools have no Pods to keep)."""
    body = {"name": f"static-{index}-{time.monotonic_ns()}", "pool_type": "static"}
    response = api.post(POOLS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"create pool: HTTP {response.status_code}: {response.text}")
    pool_id: str = response.json()["pool_id"]
    measured = Usage(env, server)
    began, submitted = runner.run(submit_all(server.url, pool_id, args.tasks, args.connections))
    usage = measured.stop()
    api.delete(f"{POOLS}/{pool_id}", params={"force": "true"}).raise_for_status()
    return BurstRound(
        way="static",
        index=index,
        all_running=0.0,
        first_added=0.0,
        last_added=0.0,
        submit_wall=submitted - began,
        pods_created=0,
        process_cpu=usage.process,
        usage=usage,
    )


def node_capacity(env: K8sTestEnv) -> list[str]:
    nodes = env.client.get("/api/v1/nodes").json()["items"]
    return [
        f"{n['metadata']['name']}: {n['status']['capacity'].get('cpu')} CPU, "
        f"{n['status']['capacity'].get('pods')} Pods"
        for n in nodes
    ]


@dataclass
class BurstSetup:
    """What both burst parts run on: a test cluster of their own, the server's settings for it,
    the Pod watch, an event loop for the bench's async calls and a lightkube client."""

    env: K8sTestEnv
    work: Path
    settings: Settings
    watch: PodWatch
    runner: asyncio.Runner
    kube: AsyncClient
    result: BurstResult


@contextlib.contextmanager
def burst_setup(
    args: argparse.Namespace, part: str, pod_sync_seconds: float
) -> Iterator[BurstSetup]:
    from tests.k8s_env import K8sTestEnv, bin_dir

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"slotpool-bench-{part}-"))
    print(f"{part}: starting the test cluster in {work / 'cluster'} ...", flush=True)
    env = K8sTestEnv.start(work / "cluster", bin_dir())
    try:
        env.wait_for_nodes_ready()
        result = BurstResult(args.rate, args.tasks, args.pods, node_capacity(env))
        result.cluster_start_s = time.monotonic() - started
        result.server_version = f"{env.client.get('/version').json().get('gitVersion', '?')}"
        prepare_namespace(env)
        settings = server_settings(
            work,
            kubeconfig=env.kubeconfig,
            kube_requests_per_second=args.rate,
            pod_sync_seconds=pod_sync_seconds,
        )
        watch = PodWatch(env, NAMESPACE)
        watch.start()
        try:
            with asyncio.Runner() as runner:
                kube = AsyncClient(
                    KubeConfig.from_file(env.kubeconfig), field_manager=FIELD_MANAGER
                )
                try:
                    yield BurstSetup(env, work, settings, watch, runner, kube, result)
                finally:
                    runner.run(kube.close())
        finally:
            watch.stop()
    finally:
        env.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_burst(args: argparse.Namespace) -> BurstResult:
    from tests.live import live_server, server_process

    with burst_setup(args, "burst", pod_sync_seconds=1.0) as b:
        # The measured rounds: the server as its own process, as it is deployed.
        with (
            server_process(b.settings, b.work / "server.log") as server,
            api_client(server.url) as api,
        ):
            burst_rounds(b.env, api, server, b.watch, b.runner, b.kube, args, b.result)
        # The diagnosis: the same server in a thread of this process, where its steps can be
        # timed and profiled (it shares this process's GIL with the bench's client and watch,
        # so its times are longer).
        loop = ServerLoop()
        with (
            runtimes_replaced(loop.build),
            live_server(b.settings) as url,
            api_client(url) as api,
        ):
            diagnose(b.env, api, url, b.watch, b.runner, loop, args, b.result)
        return b.result


def burst_rounds(
    env: K8sTestEnv,
    api: httpx.Client,
    server: ServerProcess,
    watch: PodWatch,
    runner: asyncio.Runner,
    kube: AsyncClient,
    args: argparse.Namespace,
    result: BurstResult,
) -> None:
    def one(index: int, way: str, sizes: argparse.Namespace = args) -> BurstRound:
        if way == "controller":
            return controller_round(env, api, server, watch, runner, sizes, index)
        if way == "static":
            return static_round(env, api, server, runner, sizes, index)
        return direct_round(env, kube, watch, runner, sizes, index)

    small = argparse.Namespace(**{**vars(args), "tasks": 40, "pods": 10})
    for way in WAYS:  # warm-up (10 Pods): connections, caches; not reported
        one(0, way, small)
    plan = burst_schedule(args.rounds)
    for step, (index, way) in enumerate(plan, start=1):
        time.sleep(args.settle)
        r = one(index, way)
        result.rounds.append(r)
        print(
            f"  [{step}/{len(plan)}] {way:<10} round {index}: all Running {r.all_running:6.3f} s "
            f"(first Pod {r.first_added:5.3f} s, last created {r.last_added:5.3f} s, "
            f"submitted {r.submit_wall:5.3f} s, {r.pods_created} Pods), "
            f"others' CPU {r.usage.others:5.2f} s",
            flush=True,
        )


def diagnose(
    env: K8sTestEnv,
    api: httpx.Client,
    url: str,
    watch: PodWatch,
    runner: asyncio.Runner,
    server: ServerLoop,
    args: argparse.Namespace,
    result: BurstResult,
) -> None:
    time.sleep(args.settle)
    result.instrumented = instrumented_round(env, api, url, watch, runner, args)
    print(f"  instrumented round: all Running {result.instrumented.all_running:.3f} s", flush=True)
    if args.profile:
        time.sleep(args.settle)
        profiler, seconds = profiled_round(env, api, url, watch, runner, server, args)
        result.profiled_all_running = seconds
        result.profile = profile_text(profiler)
        result.profile_own = slotpool_hotspots(profiler)
        print(f"  profiled round: all Running {seconds:.3f} s", flush=True)


def profile_text(profiler: cProfile.Profile, top: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in (sys.prefix, sys.base_prefix):
        text = text.replace(f"{prefix}/lib/{version}/site-packages/", "")
        text = text.replace(f"{prefix}/lib/{version}/", "")
    text = text.replace(str(ROOT) + "/", "")
    lines = [line.rstrip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return "\n".join(line for line in lines[start:] if line)


def slotpool_hotspots(
    profiler: cProfile.Profile, top: int = 30
) -> list[tuple[str, int, float, float]]:
    """slotpool's own functions: (function, calls, own s, cumulative s), by cumulative time."""
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    found = []
    for (path, line, name), (_, calls, own, cumulative, _) in table.items():
        if "/slotpool/" in path and "/site-packages/" not in path.replace(".venv", ""):
            where = path.split("/slotpool/", 1)[1]
            found.append((f"{where}:{line} {name}", calls, own, cumulative))
    return sorted(found, key=lambda row: -row[3])[:top]


# -- 2b. burst from a queue filled beforehand ------------------------------------------------------


QUEUED_SYNC_SECONDS = 3600.0
QUEUED_WAYS = ("queued", "direct")


async def insert_tasks(url: str, pool_id: str, tasks: int) -> float:
    """``tasks`` queued tasks built as ``TaskService.submit`` builds them, in one transaction of
    the bench's own ``Store`` (the server is not told: no notifier wake-up). Returns seconds."""
    store = Store(url)
    try:
        began = time.monotonic()
        async with store.unit_of_work() as uow:
            for i in range(tasks):
                body = TaskSubmit(pool_id=pool_id, command="true", name=f"queued-{i}")
                await uow.tasks.add(new_task_row(body, by="bench", now=utc_now()))
        return time.monotonic() - began
    finally:
        await store.close()


def cluster_pods_of(env: K8sTestEnv, pool_id: str) -> list[str]:
    """The pool's Pods as the API server lists them now (the watch may lag)."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    response = env.client.get(path, params={"labelSelector": f"{POOL_LABEL}={pool_id}"})
    response.raise_for_status()
    return [item["metadata"]["name"] for item in response.json()["items"]]


def pool_actions(api: httpx.Client, pool_id: str, since_wall: float) -> dict[str, int]:
    """How many events of each action the pool's controller wrote since ``since_wall``."""
    items = api.get(f"{POOLS}/{pool_id}/events", params={"limit": 500}).json()["items"]
    return dict(
        Counter(
            event["action"]
            for event in items
            if datetime.fromisoformat(event["at"]).timestamp() >= since_wall
        )
    )


def queued_round(
    env: K8sTestEnv,
    api: httpx.Client,
    database_url: str,
    watch: PodWatch,
    runner: asyncio.Runner,
    args: argparse.Namespace,
    index: int,
) -> BurstRound:
    """A new empty pool; its first pass awaited (token Secret), then one sync-deployment with
    an empty queue (it waits for any pass under way: the pool's lock); the tasks inserted in one
    transaction; then the clock: one ``sync-deployment`` to the ``pods``th Pod Running."""
    pool_id = create_pool(api, f"queued-{index}-{time.monotonic_ns()}")
    wait_for_worker(env, pool_id)
    sync = f"{POOLS}/{pool_id}/sync-deployment"
    idle = api.post(sync)
    idle.raise_for_status()
    if idle.json()["created"]:
        raise RuntimeError(f"the empty pool's sync created Pods: {idle.json()['created']}")
    insert_s = runner.run(insert_tasks(database_url, pool_id, args.tasks))
    queued = api.get(TASKS, params={"pool_id": pool_id, "status": "queued", "limit": 1}).json()
    existing = cluster_pods_of(env, pool_id)
    seen, _ = watch.of_pool(pool_id)
    before_wall = time.time()
    earlier = pool_actions(api, pool_id, 0.0).get("create_pods", 0)
    # The background controller must not have reacted to the queue before the clock starts.
    assert queued["total"] == args.tasks, f"{queued['total']} of {args.tasks} tasks queued"
    assert not existing, f"the API server lists Pods of the pool before the clock: {existing}"
    assert not seen, f"the watch saw Pods of the pool before the clock: {seen}"
    assert not earlier, f"{earlier} create_pods events of the pool before the clock"
    before = CpuReading.now(env)
    began_wall = time.time()
    began = time.monotonic()
    response = api.post(sync)
    synced = time.monotonic()
    if response.status_code != 200:
        raise RuntimeError(f"sync: HTTP {response.status_code}: {response.text}")
    sync_created = len(response.json()["created"])
    added, running = wait_running(watch, pool_id, args.pods)
    usage = CpuUse.between(before, CpuReading.now(env))
    time.sleep(0.5)  # a scale-up storm would show as more Pods than wanted
    added, _ = watch.of_pool(pool_id)
    passes = pool_passes(api, pool_id, began_wall)
    actions = pool_actions(api, pool_id, before_wall)
    finish_controller_round(api, env, pool_id)
    return BurstRound(
        way="queued",
        index=index,
        all_running=running[args.pods - 1] - began,
        first_added=added[0] - began,
        last_added=added[min(len(added), args.pods) - 1] - began,
        submit_wall=synced - began,
        pods_created=len(added),
        process_cpu=usage.process,
        usage=usage,
        passes=passes,
        sync_created=sync_created,
        insert_s=insert_s,
        actions=actions,
    )


def run_burst_queued(args: argparse.Namespace) -> BurstResult:
    from tests.live import live_server

    with (
        burst_setup(args, "burst-queued", pod_sync_seconds=QUEUED_SYNC_SECONDS) as b,
        live_server(b.settings) as url,
        api_client(url) as api,
    ):
        queued_rounds(b.env, api, b.settings, b.watch, b.runner, b.kube, args, b.result)
        return b.result


def queued_rounds(
    env: K8sTestEnv,
    api: httpx.Client,
    settings: Settings,
    watch: PodWatch,
    runner: asyncio.Runner,
    kube: AsyncClient,
    args: argparse.Namespace,
    result: BurstResult,
) -> None:
    def one(index: int, way: str, sizes: argparse.Namespace = args) -> BurstRound:
        if way == "queued":
            return queued_round(env, api, settings.database_url, watch, runner, sizes, index)
        return direct_round(env, kube, watch, runner, sizes, index)

    small = argparse.Namespace(**{**vars(args), "tasks": 40, "pods": 10})
    for way in QUEUED_WAYS:  # warm-up (10 Pods): connections, caches; not reported
        one(0, way, small)
    plan = burst_schedule(args.rounds, QUEUED_WAYS)
    for step, (index, way) in enumerate(plan, start=1):
        time.sleep(args.settle)
        r = one(index, way)
        result.rounds.append(r)
        extra = (
            f"sync answered {r.submit_wall:5.3f} s ({r.sync_created} created by it), "
            f"insert {r.insert_s:5.3f} s, events {r.actions}, "
            if way == "queued"
            else ""
        )
        print(
            f"  [{step}/{len(plan)}] {way:<7} round {index}: all Running {r.all_running:6.3f} s "
            f"(first Pod {r.first_added:5.3f} s, last created {r.last_added:5.3f} s, "
            f"{r.pods_created} Pods), {extra}others' CPU {r.usage.others:5.2f} s",
            flush=True,
        )


# -- 3. resync pass over many pools ----------------------------------------------------------------


@dataclass
class Measure:
    name: str
    count: int
    wall: float
    cpu: float
    db_cpu: float  # PostgreSQL's server processes (0 on SQLite: it runs in this process)
    rss_before_mb: float
    rss_after_mb: float
    rss_peak_mb: float
    traced_peak_mb: float | None = None
    token_reads: int = 0
    errors: int = 0
    writes: int = 0  # Pods created, deleted or retired by the passes (0 expected)
    first_error: str = ""

    @property
    def per_ms(self) -> float:
        return self.wall / self.count * 1000

    @property
    def cpu_per_ms(self) -> float:
        return (self.cpu + self.db_cpu) / self.count * 1000


@dataclass
class ResyncResult:
    backend: str
    database: str
    pools: int
    pods_per_pool: int
    seed_seconds: float = 0.0
    measures: list[Measure] = field(default_factory=list)
    history: list[tuple[int, float, float]] = field(default_factory=list)  # ended, pass, read
    seconds: float = 0.0

    def get(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)


def proc_status_mb(key: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


class DbCpu:
    """CPU seconds of a local PostgreSQL server's processes (0 for SQLite)."""

    def __init__(self, url: str) -> None:
        self.postmaster: int | None = None
        self._seen: dict[int, float] = {}  # per process, so the CPU of ended ones still counts
        if url.startswith("postgresql"):
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
            self.postmaster = parent_pid(int(row[0])) if row else None

    def read(self) -> float:
        if self.postmaster is None:
            return 0.0
        for pid in server_processes(self.postmaster):
            self._seen[pid] = max(self._seen.get(pid, 0.0), sum(cpu_seconds(pid)[:2]))
        return sum(self._seen.values())


async def measure(
    name: str,
    items: Sequence[Any],
    call: Callable[[Any], Awaitable[Any]],
    db: DbCpu,
    fake: FakeRuntime,
    *,
    batch: int = 1,
    trace: bool = False,
) -> Measure:
    errors = writes = 0
    first_error = ""
    reads_before = fake.token_reads

    async def one(item: Any) -> None:
        nonlocal errors, writes, first_error
        try:
            outcome = await call(item)
        except (RuntimeFailed, Exception) as exc:
            errors += 1
            first_error = first_error or repr(exc)
            return
        if isinstance(outcome, SyncReport):
            writes += len(outcome.created) + len(outcome.removed) + len(outcome.ended)

    reset_peak_rss()
    rss_before = proc_status_mb("VmRSS")
    if trace:
        tracemalloc.start()
    db_before, cpu_before, began = db.read(), time.process_time(), time.perf_counter()
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        if batch == 1:
            await one(chunk[0])
        else:
            await asyncio.gather(*(one(item) for item in chunk))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_before
    db_cpu = db.read() - db_before
    traced = None
    if trace:
        traced = tracemalloc.get_traced_memory()[1] / 1024 / 1024
        tracemalloc.stop()
    return Measure(
        name=name,
        count=len(items),
        wall=wall,
        cpu=cpu,
        db_cpu=db_cpu,
        rss_before_mb=rss_before,
        rss_after_mb=proc_status_mb("VmRSS"),
        rss_peak_mb=proc_status_mb("VmHWM"),
        traced_peak_mb=traced,
        token_reads=fake.token_reads - reads_before,
        errors=errors,
        writes=writes,
        first_error=first_error,
    )


async def seed_pools(
    store: Store,
    keeper_services: Any,
    fake: FakeRuntime,
    count: int,
    pods: int,
    ended: int = 0,
    prefix: str = "resync",
) -> list[Pool]:
    """``count`` k8s pools (through ``PoolService.create``) with ``pods`` Pods each as their
    agents' ``register`` leaves them (ready, idle slots) and reported Running by ``fake``,
    ``ended`` more that ended (state failed), and the pool's token (``TokenService.create``) in
    the fake Secret. The Pods' rows go in with multi-row INSERTs through a synchronous engine:
    ``register`` one Pod at a time would take minutes for 10,000 Pods."""
    services = keeper_services
    config = parse_config(copy.deepcopy(RESYNC_CONFIG), pool_type=PoolType.k8s)
    now = datetime.now(UTC) - timedelta(minutes=5)
    pools, pod_rows = [], []
    for i in range(count):
        pool = await services.pools.create(
            name=f"{prefix}-{i}-{ended}",
            description="",
            pool_type=PoolType.k8s,
            config=config,
            by="bench",
        )
        digest = services.pools.config_hash(pool)
        for j in range(pods + ended):
            live = j < pods
            name = f"slotpool-{pool.pool_id}-{'' if live else 'ended-'}{j:05d}"
            pod_rows.append(
                {
                    "pool_id": pool.pool_id,
                    "name": name,
                    "state": (PodState.ready if live else PodState.failed).value,
                    "config_hash": digest,
                    "slots": config.slots_per_pod,
                    "reason": "" if live else "kubernetes pod ended: Failed",
                    "phase": None if live else "Failed",
                    "node": None,
                    "agent_version": "bench",
                    "registered_at": now,
                    "last_heartbeat_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if live:
                fake.add(pool.pool_id, name, digest, now)
        _token, value = await services.tokens.create(
            pool.pool_id, name="bench", expires_at=None, by="bench"
        )
        fake.tokens[pool.pool_id] = value
        pools.append(pool)
    await asyncio.to_thread(insert_pods, store.url, pod_rows, config.slots_per_pod, now)
    return pools


def insert_pods(url: str, rows: list[dict[str, Any]], slots: int, now: datetime) -> None:
    engine = sqlalchemy.create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.insert(PodRow), rows)
            names = {(r["pool_id"], r["name"]) for r in rows}
            found = conn.execute(sqlalchemy.select(PodRow.id, PodRow.pool_id, PodRow.name))
            ids = [pod_id for pod_id, pool_id, name in found if (pool_id, name) in names]
            slot_rows = [
                {"pod_id": pod_id, "slot_index": i, "state": "idle", "task_id": None, "since": now}
                for pod_id in ids
                for i in range(slots)
            ]
            conn.execute(sqlalchemy.insert(SlotRow), slot_rows)
    finally:
        engine.dispose()


async def resync_backend(
    backend: str, url: str, database: str, args: argparse.Namespace
) -> ResyncResult:
    result = ResyncResult(backend, database, args.pools, args.pods_per_pool)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="slotpool-bench-resync-"))
    store = Store(url)
    try:
        settings = server_settings(work, database_url=url)
        fake = FakeRuntime()
        services = build_services(store, settings, utc_now, only_runtime(fake))
        keeper = services.controller
        db = DbCpu(url)
        pools = await seed_pools(store, services, fake, args.pools, args.pods_per_pool)
        result.seed_seconds = time.monotonic() - started
        print(f"  {backend}: seeded {args.pools} pools in {result.seed_seconds:.1f} s", flush=True)

        async def read(pool: Pool) -> int:
            async with store.unit_of_work() as uow:
                return len(await uow.pods.of_pool(pool.pool_id))

        async def reconcile(pool: Pool) -> SyncReport:
            return await keeper.run_pass(pool.pool_id, check_secret=False)

        extras = backend in args.extras
        traced = pools[: args.trace_pools]
        steps: list[tuple[str, Callable[[Any], Awaitable[Any]], list[Pool], int, bool]] = [
            ("of_pool read (baseline)", read, pools, 1, False),
            ("reconcile, first pass (Secret check due)", reconcile, pools, 1, False),
            ("reconcile, steady pass", reconcile, pools, 1, False),
            ("of_pool read (baseline, again)", read, pools, 1, False),
        ]
        if extras:
            steps += [
                (f"reconcile, gather batches of {args.batch}", reconcile, pools, args.batch, False),
                (f"of_pool read, gather batches of {args.batch}", read, pools, args.batch, False),
                (f"reconcile, {len(traced)} pools, tracemalloc on", reconcile, traced, 1, True),
                (f"of_pool read, {len(traced)} pools, tracemalloc on", read, traced, 1, True),
            ]
        for name, call, items, batch, trace in steps:
            m = await measure(name, items, call, db, fake, batch=batch, trace=trace)
            result.measures.append(m)
            print(
                f"  {backend}: {name:<45} {m.wall:7.2f} s wall, {m.per_ms:6.2f} ms/pool, "
                f"CPU {m.cpu:6.2f} s (+ database {m.db_cpu:5.2f} s), errors {m.errors} "
                f"{m.first_error}",
                flush=True,
            )
        for ended in args.history if extras else []:
            (pool,) = await seed_pools(
                store, services, fake, 1, args.pods_per_pool, ended, prefix="history"
            )
            await reconcile(pool)  # its first pass: the Secret check
            passes, reads = [], []
            for _ in range(args.history_runs):
                began = time.perf_counter()
                await reconcile(pool)
                passes.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                await read(pool)
                reads.append((time.perf_counter() - began) * 1000)
            result.history.append((ended, statistics.median(passes), statistics.median(reads)))
            print(
                f"  {backend}: pool with {args.pods_per_pool} live and {ended} ended Pods: "
                f"pass {statistics.median(passes):.1f} ms, "
                f"of_pool {statistics.median(reads):.1f} ms",
                flush=True,
            )
    finally:
        await store.close()
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def run_resync(args: argparse.Namespace) -> list[ResyncResult]:
    results = []
    for backend in args.backends:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="slotpool-bench-resync-db-") as tmp:
                url = f"sqlite:///{tmp}/slotpool.db"
                upgrade(url)
                version = f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)"
                results.append(asyncio.run(resync_backend(backend, url, version, args)))
            continue
        pg = start_postgres()
        try:
            with pg.temporary_database() as url:
                upgrade(url)
                with psycopg.connect(url) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
                version = f"PostgreSQL {row[0] if row else '?'} (fsync=off, test server)"
                results.append(asyncio.run(resync_backend(backend, url, version, args)))
        finally:
            pg.stop()
    return results


# -- the whole run and its report ------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    started: datetime
    machine: dict[str, str]
    load_before: str
    busy_before: list[str]
    cpu_check_before: float
    cpu_check_after: float = 0.0
    seconds: float = 0.0
    reactions: list[Reaction] = field(default_factory=list)
    burst: BurstResult | None = None
    queued: BurstResult | None = None
    resync: list[ResyncResult] = field(default_factory=list)


def machine() -> dict[str, str]:
    found = k8s_machine()
    versions = []
    for package in ("sqlalchemy", "aiosqlite", "psycopg", "fastapi", "uvicorn"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    found["Libraries"] += ", " + ", ".join(versions)
    found["SQLite"] = sqlite3.sqlite_version
    return found


def reaction_section(run: Run) -> list[str]:
    if not run.reactions:
        return []
    args = run.args
    lines = [
        "## 1. Scale-up reaction (fake runtime)",
        "",
        f"A k8s pool with `slots_per_pod=1`, `min_replicas=0`, `max_replicas=1000` on SQLite; "
        f"{args.warmups} unmeasured tasks, then {args.samples} tasks submitted one after the other "
        "(the next once the previous one's Pod was created). Every Pod reports `Running` but no "
        "agent registers, so each task needs a new Pod and the pool grows to "
        f"{args.warmups + args.samples} Pods. Time from the POST to `create_agent` being called "
        "(`time.perf_counter()` in the fake runtime; the server runs in a thread of this process). "
        "The runtime is injected by replacing `slotpool.api.app.build_runtimes` in the bench "
        "process while the server starts.",
        "",
        "| `pod_sync_seconds` | from | n | p50 ms | p90 ms | p99 ms | max ms | goal |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.reactions:
        goal = GOALS["reaction_ms"]
        verdict = "met" if r.after_return_ms and percent(r.after_return_ms, 99) < goal else "MISSED"
        lines += [
            f"| {r.resync:g} | POST answered | {len(r.after_return_ms)} "
            f"| {ms_stats(r.after_return_ms)} | p99 < {goal:.0f} ms: {verdict} |",
            f"| {r.resync:g} | POST sent | {len(r.after_send_ms)} "
            f"| {ms_stats(r.after_send_ms)} | |",
            f"| {r.resync:g} | (the POST itself) | {len(r.post_ms)} | {ms_stats(r.post_ms)} | |",
        ]
    lines += ["", "As the pool grows (POST answered to `create_agent`, ms):", ""]
    lines += ["| `pod_sync_seconds` | Pods before the task | p50 ms | p90 ms | p99 ms | max ms |"]
    lines += ["|---:|---|---:|---:|---:|---:|"]
    for r in run.reactions:
        n = len(r.after_return_ms)
        for lo, hi in ((0, n // 4), (n // 4, n // 2), (n // 2, 3 * n // 4), (3 * n // 4, n)):
            if hi > lo:
                pods = f"{lo + args.warmups}-{hi - 1 + args.warmups}"
                lines.append(f"| {r.resync:g} | {pods} | {ms_stats(r.after_return_ms[lo:hi])} |")
    lines += [""]
    for r in run.reactions:
        new = "no create within the wait" if r.new_pool_ms is None else f"{r.new_pool_ms:.0f} ms"
        timeouts = f", {r.timeouts} samples timed out" if r.timeouts else ""
        lines.append(
            f"* `pod_sync_seconds={r.resync:g}`: a pool created through the API while the server "
            f"runs, one task submitted at once: first `create_agent` after **{new}**{timeouts}. "
            f"Other processes used {r.others_cpu:.1f} CPU-s during this part ({r.seconds:.0f} s)."
        )
    return [*lines, ""]


def burst_summary(result: BurstResult) -> list[str]:
    metrics: list[tuple[str, Callable[[BurstRound], float]]] = [
        ("time to all Running (s)", lambda r: r.all_running),
        (
            "last POST answered to all Running (s; direct: = all Running)",
            lambda r: r.all_running - r.submit_wall,
        ),
        ("to the first Pod created (s)", lambda r: r.first_added),
        (f"to the {result.pods}th Pod created (s)", lambda r: r.last_added),
        ("process CPU (server + bench) (s)", lambda r: r.process_cpu),
        ("cluster CPU (s)", lambda r: r.usage.cluster_total),
        ("others' CPU (s)", lambda r: r.usage.others),
    ]
    ctl, direct = result.of("controller"), result.of("direct")
    lines = [
        "| measure | controller | direct | controller / direct | paired rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, value in metrics:
        a = statistics.median(value(r) for r in ctl)
        b = statistics.median(value(r) for r in direct)
        pairs = [value(x) / value(y) for x, y in zip(ctl, direct, strict=True) if value(y) > 0]
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
        strong = "**" if name.startswith("time to all") else ""
        lines.append(
            f"| {name} | {a:.3f} | {b:.3f} | {strong}{a / b:.2f}{strong} | {spread} |"
            if b > 0
            else f"| {name} | {a:.3f} | {b:.3f} | - | - |"
        )
    submit = statistics.median(r.submit_wall for r in ctl)
    lines.append(f"| {result.tasks} POSTs answered (s) | {submit:.3f} | - | - | - |")
    static = result.of("static")
    if static:
        alone = statistics.median(r.submit_wall for r in static)
        cpu = statistics.median(r.process_cpu for r in static)
        others = statistics.median(r.usage.others for r in static)
        lines += [
            "",
            f"The same {result.tasks} POSTs into a **static** pool of the same server (no "
            f"controller pass; median of {len(static)} rounds run between the others): answered "
            f"after **{alone:.3f} s** ({result.tasks / alone:.0f} tasks/s; process CPU {cpu:.2f} "
            f"s, others' CPU {others:.2f} s), against {submit:.3f} s "
            f"({result.tasks / submit:.0f} tasks/s) into the k8s pool.",
        ]
    return lines


def burst_ratio(result: BurstResult) -> float:
    ctl = statistics.median(r.all_running for r in result.of("controller"))
    return ctl / statistics.median(r.all_running for r in result.of("direct"))


def burst_section(run: Run) -> list[str]:
    result = run.burst
    if result is None:
        return []
    args = run.args
    ratio = burst_ratio(result)
    verdict = "met" if ratio <= GOALS["burst_ratio"] else "MISSED"
    lines = [
        "## 2. Burst on the test cluster",
        "",
        f"* Cluster: `tests/k8s_env.py` (Kubernetes {result.server_version}, kwok), started in "
        f"{result.cluster_start_s:.0f} s; Nodes: {'; '.join(result.node_pods_capacity)}.",
        f"* controller: the server as its own process (`tests/live.py` `server_process`: "
        f"`python -m slotpool.cli server`, SQLite, `pod_sync_seconds=1`, "
        f"`kube_requests_per_second={args.rate:g}`), a new empty pool per round "
        f"(`{json.dumps(BURST_CONFIG)}`), its first controller pass awaited (its token Secret "
        f"exists), then {args.tasks} tasks POSTed at once over {args.connections} keep-alive "
        f"connections (one `httpx.AsyncClient`, in the bench's main thread). Clock: first POST "
        f"to the {args.pods}th Pod of the pool `Running`.",
        f"* direct: {args.pods} Pods from the same builder, `await bucket.acquire(); await "
        f"client.create(pod)` (`bench_k8s.creator`: the runtime's `TokenBucket` at "
        f"{args.rate:g}/s, one lightkube `AsyncClient`, `Pod` objects built beforehand), all at "
        f"once. Clock: first create to the {args.pods}th Pod `Running`.",
        f"* {args.rounds} rounds per way, alternating (A B, B A, ...), after one warm-up each; "
        "the pool is deleted and every Pod deleted (grace 0) and gone between rounds. `Running` "
        "and creation times come from a watch in its own thread.",
        "",
        f"**Time to {args.pods} Pods Running, controller / direct: {ratio:.2f}** "
        f"(goal at most {GOALS['burst_ratio']:.2f}: {verdict}).",
        "",
        *burst_summary(result),
        "",
        "| # | way | round | all Running s | first Pod s | last Pod created s | POSTs done s "
        "| Pods | process CPU s | cluster CPU s | others' CPU s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step, r in enumerate(result.rounds, start=1):
        lines.append(
            f"| {step} | {r.way} | {r.index} | {r.all_running:.3f} | {r.first_added:.3f} "
            f"| {r.last_added:.3f} | {r.submit_wall:.3f} | {r.pods_created} | {r.process_cpu:.2f} "
            f"| {r.usage.cluster_total:.2f} | {r.usage.others:.2f} |"
        )
    storms = [r for r in result.of("controller") if r.pods_created != args.pods]
    lines += [
        "",
        "Pods created per controller round (a scale-up storm would exceed "
        f"{args.pods}): {', '.join(str(r.pods_created) for r in result.of('controller'))}"
        + (f"; rounds off the count: {len(storms)}" if storms else "")
        + ".",
        "",
    ]
    lines += passes_section(result)
    return lines


def passes_section(result: BurstResult) -> list[str]:
    lines: list[str] = []
    ctl = result.of("controller")
    if ctl:
        lines += [
            "The controller's creating passes, from the pool's events (median round; the "
            "event is written at the end of its pass, seconds after the first POST):",
            "",
        ]
        median_round = sorted(ctl, key=lambda r: r.all_running)[len(ctl) // 2]
        lines.append(
            "| pass | event at s | queued seen | Pods created |\n|---:|---:|---:|---:|\n"
            + "\n".join(
                f"| {i} | {p['at']:.3f} | {p['queued']} | {p['created']} |"
                for i, p in enumerate(median_round.passes, start=1)
            )
        )
        lines.append("")
    inst = result.instrumented
    if inst is not None:
        lines += [
            "### Where the time goes (one more controller round, instrumented)",
            "",
            f"The controller's steps and the request handlers around them, wrapped to record "
            f"their wall time (awaits included; this round: POSTs answered after "
            f"{inst.submit_wall:.3f} s, all Running after {inst.all_running:.3f} s):",
            "",
            "| step | calls | total s | mean ms | max ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, values in sorted(inst.calls.items(), key=lambda kv: -sum(kv[1])):
            lines.append(
                f"| `{name}` | {len(values)} | {sum(values):.3f} "
                f"| {statistics.mean(values) * 1000:.1f} | {max(values) * 1000:.1f} |"
            )
        lines += [
            "",
            "Its passes (seconds from the first POST; act = creating and deleting):",
            "",
            "| pass | start s | end s | queued seen | capacity Pods | created | act s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for i, p in enumerate(inst.passes, start=1):
            act = p.get("act_end", 0.0) - p.get("act_start", 0.0)
            lines.append(
                f"| {i} | {p['pass_start']:.3f} | {p['pass_end']:.3f} "
                f"| {p.get('queued', float('nan')):.0f} | {p.get('capacity', float('nan')):.0f} "
                f"| {p.get('created', 0):.0f} | {act:.3f} |"
            )
        lines.append("")
    if result.profile:
        lines += [
            "### Profile (one more controller round, cProfile in the server's thread)",
            "",
            f"All Running after {result.profiled_all_running:.3f} s under the profiler. slotpool's "
            "functions by cumulative time (a coroutine's time adds up its steps, not its waits):",
            "",
            "| function | calls | own s | cumulative s |",
            "|---|---:|---:|---:|",
            *(
                f"| `{name}` | {calls} | {own:.3f} | {cumulative:.3f} |"
                for name, calls, own, cumulative in result.profile_own
            ),
            "",
            "Top functions by own time:",
            "",
            "```",
            result.profile,
            "```",
            "",
        ]
    return lines


def queued_ratio(result: BurstResult) -> float:
    ctl = statistics.median(r.all_running for r in result.of("queued"))
    return ctl / statistics.median(r.all_running for r in result.of("direct"))


def queued_section(run: Run) -> list[str]:
    result = run.queued
    if result is None:
        return []
    args = run.args
    ratio = queued_ratio(result)
    verdict = "met" if ratio <= GOALS["burst_ratio"] else "MISSED"
    queued, direct = result.of("queued"), result.of("direct")
    metrics: list[tuple[str, Callable[[BurstRound], float]]] = [
        ("time to all Running (s)", lambda r: r.all_running),
        ("to the first Pod created (s)", lambda r: r.first_added),
        (f"to the {result.pods}th Pod created (s)", lambda r: r.last_added),
        ("process CPU (server + bench) (s)", lambda r: r.process_cpu),
        ("cluster CPU (s)", lambda r: r.usage.cluster_total),
        ("others' CPU (s)", lambda r: r.usage.others),
    ]
    lines = [
        "## 2b. Burst from a queue filled beforehand (test cluster, one `sync-deployment`)",
        "",
        f"* Cluster: as in part 2 (Kubernetes {result.server_version}, kwok; a cluster of its "
        f"own, started in {result.cluster_start_s:.0f} s).",
        f"* queued: an in-process server as in part 2 but with `pod_sync_seconds="
        f"{QUEUED_SYNC_SECONDS:g}` (no periodic pass; a queued task wakes the controller only "
        f"through the server's own notifier), a new empty pool per round, its first pass "
        f"awaited (token Secret) and one `sync-deployment` with the queue empty (0 Pods). Then "
        f"{args.tasks} tasks shaped as `TaskService.submit` builds them are inserted in ONE "
        "transaction by the bench's own `Store` on the server's SQLite file (the server is not "
        "notified), and it is checked that they are queued, that the API server lists no Pod "
        "of the pool, the watch saw none and the pool has no `create_pods` event. Clock: one "
        f"`POST {POOLS}/{{id}}/sync-deployment` (a controller pass at once) to the "
        f"{args.pods}th Pod of the pool `Running`.",
        f"* direct: as in part 2 ({args.pods} bare Pods, the same `TokenBucket` at "
        f"{args.rate:g}/s). {args.rounds} rounds per way, alternating, after one warm-up each.",
        "",
        f"**Time to {args.pods} Pods Running, queued controller / direct: {ratio:.2f}** "
        f"(goal at most {GOALS['burst_ratio']:.2f}: {verdict}).",
        "",
        "| measure | queued | direct | queued / direct | paired rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, value in metrics:
        a = statistics.median(value(r) for r in queued)
        b = statistics.median(value(r) for r in direct)
        pairs = [value(x) / value(y) for x, y in zip(queued, direct, strict=True) if value(y) > 0]
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
        strong = "**" if name.startswith("time to all") else ""
        lines.append(
            f"| {name} | {a:.3f} | {b:.3f} | {strong}{a / b:.2f}{strong} | {spread} |"
            if b > 0
            else f"| {name} | {a:.3f} | {b:.3f} | - | - |"
        )
    sync = statistics.median(r.submit_wall for r in queued)
    insert = statistics.median(r.insert_s for r in queued)
    lines += [
        f"| the `sync-deployment` answered (s) | {sync:.3f} | - | - | - |",
        f"| (not timed) inserting the {result.tasks} tasks, one transaction (s) "
        f"| {insert:.3f} | - | - | - |",
        "",
        "| # | way | round | all Running s | first Pod s | last Pod created s | sync answered s "
        "| Pods | created by the sync's pass | creating passes (Pods each) | events "
        "| process CPU s | cluster CPU s | others' CPU s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for step, r in enumerate(result.rounds, start=1):
        is_queued = r.way == "queued"
        creating = (
            f"{len(r.passes)} ({', '.join(str(p['created']) for p in r.passes)})"
            if is_queued
            else "-"
        )
        events = ", ".join(f"{k} {v}" for k, v in sorted(r.actions.items())) or "-"
        synced = f"{r.submit_wall:.3f}" if is_queued else "-"
        lines.append(
            f"| {step} | {r.way} | {r.index} | {r.all_running:.3f} | {r.first_added:.3f} "
            f"| {r.last_added:.3f} | {synced} | {r.pods_created} "
            f"| {r.sync_created if is_queued else '-'} | {creating} | {events} "
            f"| {r.process_cpu:.2f} | {r.usage.cluster_total:.2f} | {r.usage.others:.2f} |"
        )
    lines.append("")
    return lines


def resync_section(run: Run) -> list[str]:
    if not run.resync:
        return []
    args = run.args
    lines = [
        "## 3. Resync pass over many pools (fake runtime, no server)",
        "",
        f"{args.pools} k8s pools (`{json.dumps(RESYNC_CONFIG)}`), each with "
        f"{args.pods_per_pool} Pods as their agents' `register` leaves them (ready, idle slots; "
        "written with multi-row INSERTs to keep seeding short) that the fake runtime reports "
        "`Running` with the pool's config hash, and the pool's token in "
        "the fake Secret. A pass is `reconcile(pool, check_secret=False)` for every pool, one "
        "after the other unless batched; the baseline is one `uow.pods.of_pool(pool_id)` per "
        "pool, each in its own unit of work. CPU = `time.process_time()` of this process "
        "(aiosqlite's threads included) + PostgreSQL's server processes. RSS peak = `VmHWM` "
        "after resetting it; tracemalloc runs only in the passes that say so (it slows them).",
        "",
    ]
    for result in run.resync:
        base = result.get("of_pool read (baseline)")
        steady = result.get("reconcile, steady pass")
        lines += [
            f"### {result.database}",
            "",
            f"Seeding ({result.pools} pools, {result.pools * result.pods_per_pool} Pods, "
            f"tokens): {result.seed_seconds:.1f} s.",
            "",
            "| measure | wall s | ms per pool | CPU s (this process + database) | CPU ms per pool "
            "| / baseline (ms per pool) | RSS before -> after MiB | RSS peak MiB "
            "| tracemalloc peak MiB | Secret reads | errors | Pods changed |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for m in result.measures:
            traced = "-" if m.traced_peak_mb is None else f"{m.traced_peak_mb:.1f}"
            lines.append(
                f"| {m.name} | {m.wall:.2f} | {m.per_ms:.2f} | {m.cpu:.2f} + {m.db_cpu:.2f} "
                f"| {m.cpu_per_ms:.2f} | {m.per_ms / base.per_ms:.2f} "
                f"| {m.rss_before_mb:.0f} -> {m.rss_after_mb:.0f} | {m.rss_peak_mb:.0f} | {traced} "
                f"| {m.token_reads} | {m.errors} | {m.writes} |"
            )
        lines += [
            "",
            f"Steady pass / baseline: **{steady.wall / base.wall:.2f}** (wall), "
            f"{steady.cpu_per_ms / base.cpu_per_ms:.2f} (CPU). One pass over all "
            f"{result.pools} pools costs {steady.cpu + steady.db_cpu:.1f} CPU-s: with "
            "`pod_sync_seconds=1` every pool's worker asks for a pass every second, i.e. about "
            f"{(steady.cpu + steady.db_cpu):.0f} CPUs; one process gets through all pools only "
            f"every {steady.wall:.0f} s or so, busy all the time.",
            "",
        ]
        if result.history:
            lines += [
                f"One pool with {result.pods_per_pool} live Pods and N ended Pods' rows "
                f"(median of {args.history_runs}):",
                "",
                "| ended Pods (rows) | pass ms | of_pool ms |",
                "|---:|---:|---:|",
                *(f"| {n} | {p:.1f} | {r:.1f} |" for n, p, r in result.history),
                "",
            ]
    return lines


def goals_section(run: Run) -> list[str]:
    lines = ["## Goals", "", "| measure | goal | result | |", "|---|---|---:|---|"]
    for r in run.reactions:
        if r.after_return_ms:
            p50, p99 = percent(r.after_return_ms, 50), percent(r.after_return_ms, 99)
            ok = "met" if p99 < GOALS["reaction_ms"] else "MISSED"
            lines.append(
                f"| scale-up reaction, `pod_sync_seconds={r.resync:g}` (POST answered to "
                f"`create_agent`) | under {GOALS['reaction_ms']:.0f} ms | p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms | {ok} |"
            )
    if run.burst is not None:
        ratio = burst_ratio(run.burst)
        ok = "met" if ratio <= GOALS["burst_ratio"] else "MISSED"
        lines.append(
            f"| burst: time to {run.burst.pods} Running, controller / direct | at most "
            f"{GOALS['burst_ratio']:.2f} | {ratio:.2f} | {ok} |"
        )
    if run.queued is not None:
        ratio = queued_ratio(run.queued)
        ok = "met" if ratio <= GOALS["burst_ratio"] else "MISSED"
        lines.append(
            f"| burst, {run.queued.tasks} tasks queued beforehand, one `sync-deployment`: time to "
            f"{run.queued.pods} Running, controller / direct | at most "
            f"{GOALS['burst_ratio']:.2f} | {ratio:.2f} | {ok} |"
        )
    for result in run.resync:
        base = result.get("of_pool read (baseline)")
        steady = result.get("reconcile, steady pass")
        lines.append(
            f"| resync pass, {result.backend}: per pool / `of_pool` read | (none set) "
            f"| {steady.per_ms:.2f} ms / {base.per_ms:.2f} ms = {steady.wall / base.wall:.2f} | |"
        )
    return [*lines, ""]


def report(run: Run, findings: str) -> str:
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        [".venv/bin/python", "bench/bench_controller.py", *sys.argv[1:]]
    )
    lines = [
        "# slotpool pool controller benchmark",
        "",
        f"* Date: {run.started:%Y-%m-%d %H:%M:%S} UTC (whole run: {run.seconds:.0f} s)",
        f"* Command: `{command}`",
        f"* Code: {code_fingerprint()}",
        "* Parts: " + ", ".join(run.args.parts),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in run.machine.items()),
        f"| Load before the run | {run.load_before}; busiest other processes over 2 s: "
        f"{', '.join(run.busy_before) or 'none'} (100% = one CPU) |",
        f"| CPU check | `sum(range(5_000_000))`, best of 5: {run.cpu_check_before:.1f} ms before "
        f"the run, {run.cpu_check_after:.1f} ms after |",
        "",
        f"The machine has {run.machine['CPUs (nproc)']} CPUs for the benchmark, the test cluster "
        "and other engineers' test runs, which went on during this run: absolute numbers are "
        "noisy; compare the ratios against their baselines from the same run.",
        "",
        *goals_section(run),
        *reaction_section(run),
        *burst_section(run),
        *queued_section(run),
        *resync_section(run),
    ]
    if findings:
        lines += [findings.rstrip(), ""]
    return "\n".join(lines).rstrip() + "\n"


FINDINGS_MARKER = "<!-- findings: kept from the previous report when it is rewritten -->"


def kept_findings(path: Path) -> str:
    """The hand-written analysis at the end of the previous report, kept across reruns."""
    with contextlib.suppress(OSError):
        text = path.read_text()
        if FINDINGS_MARKER in text:
            return FINDINGS_MARKER + text.split(FINDINGS_MARKER, 1)[1]
    return ""


def print_summary(run: Run) -> None:
    print()
    for line in goals_section(run):
        if line.startswith("| ") and not line.startswith("| measure"):
            print(line)


# -- entry point -----------------------------------------------------------------------------------


PARTS = ("reaction", "burst", "burst-queued", "resync")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/bench_controller.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def listed(choices: Sequence[str]) -> Callable[[str], list[str]]:
        def parse(text: str) -> list[str]:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            wrong = [p for p in parts if p not in choices]
            if wrong:
                raise argparse.ArgumentTypeError(f"unknown {wrong}; choose from {choices}")
            return parts

        return parse

    parser.add_argument(
        "--parts",
        type=listed(PARTS),
        default=list(PARTS),
        help="reaction,burst,burst-queued,resync",
    )
    parser.add_argument("--samples", type=int, default=200, help="reaction: tasks measured (200)")
    parser.add_argument("--warmups", type=int, default=5, help="reaction: tasks not measured (5)")
    parser.add_argument(
        "--resyncs",
        type=lambda text: [float(p) for p in text.split(",")],
        default=[30.0, 1.0],
        help="reaction: pod_sync_seconds values (30,1)",
    )
    parser.add_argument("--tasks", type=int, default=400, help="burst(-queued): tasks (400)")
    parser.add_argument("--pods", type=int, default=100, help="burst(-queued): Pods wanted (100)")
    parser.add_argument("--rate", type=float, default=50.0, help="burst(-queued): requests/s (50)")
    parser.add_argument("--connections", type=int, default=16, help="burst: HTTP connections (16)")
    parser.add_argument("--rounds", type=int, default=3, help="burst(-queued): rounds per way (3)")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="burst: rest between rounds (1 s)"
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="burst: no cProfile round"
    )
    parser.add_argument("--pools", type=int, default=1000, help="resync: pools (1000)")
    parser.add_argument("--pods-per-pool", type=int, default=10, help="resync: Pods per pool (10)")
    parser.add_argument(
        "--backends",
        type=listed(("sqlite", "postgresql")),
        default=["sqlite", "postgresql"],
        help="resync: sqlite,postgresql",
    )
    parser.add_argument("--batch", type=int, default=50, help="resync: gather batch size (50)")
    parser.add_argument(
        "--trace-pools", type=int, default=200, help="resync: pools of the tracemalloc passes (200)"
    )
    parser.add_argument(
        "--extras",
        type=listed(("sqlite", "postgresql")),
        default=["sqlite"],
        help="resync: backends that also run the gather, tracemalloc and history parts (sqlite)",
    )
    parser.add_argument(
        "--history",
        type=lambda text: [int(p) for p in text.split(",") if p],
        default=[0, 100, 1000],
        help="resync: ended Pods' rows of the one-pool runs (0,100,1000)",
    )
    parser.add_argument("--history-runs", type=int, default=20, help="resync: passes per pool (20)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the report file")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the report")
    args = parser.parse_args(argv)
    args.pods = min(args.pods, BURST_CONFIG["max_replicas"])
    if args.samples < 2 or args.rounds < 1 or args.tasks < args.pods:
        parser.error("--samples must be >= 2, --rounds >= 1 and --tasks >= --pods")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo_importable()
    configure_logging(level="warning", log_format="console")
    started = time.monotonic()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    run = Run(
        args=args,
        started=datetime.now(UTC),
        machine=machine(),
        load_before=f"load average {load} (1 / 5 / 15 min)",
        busy_before=busy_processes(),
        cpu_check_before=cpu_check_ms(),
    )
    if "reaction" in args.parts:
        for resync in args.resyncs:
            print(f"reaction: pod_sync_seconds={resync:g} ...", flush=True)
            reaction = run_reaction(resync, args.samples, args.warmups)
            run.reactions.append(reaction)
            print(
                "  POST answered -> create_agent: "
                f"p50 {percent(reaction.after_return_ms, 50):.1f} ms"
                f", p99 {percent(reaction.after_return_ms, 99):.1f} ms; new pool: "
                f"{reaction.new_pool_ms} ms",
                flush=True,
            )
    if "burst" in args.parts:
        run.burst = run_burst(args)
    if "burst-queued" in args.parts:
        run.queued = run_burst_queued(args)
    if "resync" in args.parts:
        print("resync ...", flush=True)
        run.resync = run_resync(args)
    run.cpu_check_after = cpu_check_ms()
    run.seconds = time.monotonic() - started
    print_summary(run)
    if not args.no_write:
        args.output.write_text(report(run, kept_findings(args.output)))
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
