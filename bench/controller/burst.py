"""Parts 2 and 2b: a burst of tasks into an empty pool on the test cluster, until its Pods run,
against creating the same Pods directly (see the package's docstring)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import cProfile
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from lightkube import AsyncClient, KubeConfig
from tests.support.server import LiveServer, ServerProcess, live_server, server_process

from bench.controller.common import (
    ADMIN,
    BURST_CONFIG,
    NAMESPACE,
    POOLS,
    SERVER_PASS_TIMEOUT,
    TASKS,
    api_client,
    server_settings,
)
from bench.harness.cluster import Cluster, PodWatch, creator, pod_manifest, started_cluster
from bench.harness.cpu import Reading, Use, process_seconds
from bench.harness.profile import Hotspot, hotspots, profile_text
from slotpool.clock import utc_now
from slotpool.controller.executor import Executor
from slotpool.controller.inventory import Observer
from slotpool.controller.reconciler import Reconciler
from slotpool.controller.record import Recorder
from slotpool.domain.manifest import POOL_LABEL, token_secret_name
from slotpool.domain.tasks import TaskSubmit
from slotpool.runtime.kubernetes import FIELD_MANAGER, KubernetesRuntime
from slotpool.services.dispatch import Dispatcher
from slotpool.services.secret_tokens import SecretTokens
from slotpool.services.tasks import TaskService, new_task_row
from slotpool.settings import Settings
from slotpool.store.pods import PodRepository
from slotpool.store.uow import Store

RUNNING_TIMEOUT = 120.0
WAYS = ("controller", "direct", "static")
QUEUED_WAYS = ("queued", "direct")
QUEUED_SYNC_SECONDS = 3600.0


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
    usage: Use
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
    profile_own: list[Hotspot] = field(default_factory=list)
    profiled_all_running: float = 0.0
    cluster_start_s: float = 0.0
    server_version: str = "?"

    def of(self, way: str) -> list[BurstRound]:
        return [r for r in self.rounds if r.way == way and r.index > 0]


@dataclass
class Burst:
    """What both burst parts run on: a test cluster of their own, the server's settings for it,
    the Pod watch, an event loop for the bench's async calls and a lightkube client."""

    cluster: Cluster
    work: Path
    settings: Settings
    watch: PodWatch
    runner: asyncio.Runner
    kube: AsyncClient
    args: argparse.Namespace
    result: BurstResult

    def use(self, server: ServerProcess | None = None) -> Callable[[], Use]:
        """CPU from now until the returned call; the server process's counts as the process's
        (the others' share then no longer includes it)."""
        env = self.cluster.env
        before = Reading.now({name: process_seconds(pid) for name, pid, _ in env.processes()})
        server_before = server.cpu_seconds() if server is not None else 0.0

        def stop() -> Use:
            after = Reading.now({name: process_seconds(pid) for name, pid, _ in env.processes()})
            used = Use.between(before, after)
            if server is None:
                return used
            extra = server.cpu_seconds() - server_before
            return Use(used.process + extra, used.named, max(0.0, used.others - extra))

        return stop


@contextlib.contextmanager
def burst_setup(args: argparse.Namespace, part: str, pod_sync_seconds: float) -> Iterator[Burst]:
    with (
        tempfile.TemporaryDirectory(prefix=f"slotpool-bench-{part}-") as tmp,
        started_cluster(f"slotpool-bench-{part}-cluster-") as cluster,
        asyncio.Runner() as runner,
    ):
        result = BurstResult(args.rate, args.tasks, args.pods, cluster.node_capacity())
        result.cluster_start_s = cluster.start_seconds
        result.server_version = cluster.version.get("gitVersion", "?")
        cluster.prepare(NAMESPACE)
        settings = server_settings(
            Path(tmp),
            kubeconfig=cluster.env.kubeconfig,
            kube_requests_per_second=args.rate,
            pod_sync_seconds=pod_sync_seconds,
        )
        config = KubeConfig.from_file(cluster.env.kubeconfig)
        kube = AsyncClient(config, field_manager=FIELD_MANAGER)
        try:
            with PodWatch(cluster.env, NAMESPACE) as watch:
                yield Burst(cluster, Path(tmp), settings, watch, runner, kube, args, result)
        finally:
            runner.run(kube.close())


# -- the rounds --------------------------------------------------------------------------------


def create_pool(api: httpx.Client, name: str) -> str:
    body = {"name": name, "pool_type": "k8s", "k8s_config": BURST_CONFIG}
    response = api.post(POOLS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"create pool: HTTP {response.status_code}: {response.text}")
    pool_id: str = response.json()["pool_id"]
    return pool_id


def wait_for_worker(b: Burst, pool_id: str) -> None:
    """The controller's first pass over a pool writes its token Secret: then its worker runs."""
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets/{token_secret_name(pool_id)}"
    deadline = time.monotonic() + SERVER_PASS_TIMEOUT
    while b.cluster.env.client.get(path).status_code != 200:
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


def submitted(b: Burst, url: str, pool_id: str, sizes: argparse.Namespace) -> tuple[float, float]:
    return b.runner.run(submit_all(url, pool_id, sizes.tasks, b.args.connections))


def pool_events(api: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(
        f"{POOLS}/{pool_id}/events", params={"limit": 500}
    ).json()["items"]
    return items


def pool_passes(api: httpx.Client, pool_id: str, began_wall: float) -> list[dict[str, Any]]:
    """The pool's create_pods events (one per pass that created), oldest first."""
    passes = []
    for event in reversed(pool_events(api, pool_id)):
        if event["action"] != "create_pods":
            continue
        message: str = event["message"]
        passes.append(
            {
                "at": datetime.fromisoformat(event["at"]).timestamp() - began_wall,
                "queued": event["inputs"].get("inputs", {}).get("queued"),
                "created": int(message.rsplit("creating ", 1)[-1].split()[0]),
            }
        )
    return passes


def pool_actions(api: httpx.Client, pool_id: str, since_wall: float) -> dict[str, int]:
    """How many events of each action the pool's controller wrote since ``since_wall``."""
    return dict(
        Counter(
            event["action"]
            for event in pool_events(api, pool_id)
            if datetime.fromisoformat(event["at"]).timestamp() >= since_wall
        )
    )


def finish_controller_round(b: Burst, api: httpx.Client, pool_id: str) -> None:
    """Delete the pool (its tasks go with it), let its worker notice, then delete its Pods."""
    api.delete(f"{POOLS}/{pool_id}", params={"force": "true"}).raise_for_status()
    time.sleep(1.5)
    b.cluster.delete_all(NAMESPACE)


def pool_round(
    b: Burst, pool_id: str, began: float, running: list[float], usage: Use, **fields: Any
) -> BurstRound:
    """A controller round's record (``running``: the wanted Pods' times); its Pods are counted
    half a second after the last one ran (a scale-up storm would show as more than wanted)."""
    time.sleep(0.5)
    added, _ = b.watch.of_pool(pool_id)
    pods = len(running)
    return BurstRound(
        all_running=running[pods - 1] - began,
        first_added=added[0] - began,
        last_added=added[min(len(added), pods) - 1] - began,
        pods_created=len(added),
        process_cpu=usage.process,
        usage=usage,
        **fields,
    )


def controller_round(
    b: Burst, api: httpx.Client, server: ServerProcess, sizes: argparse.Namespace, index: int
) -> BurstRound:
    pool_id = create_pool(api, f"burst-{index}-{time.monotonic_ns()}")
    wait_for_worker(b, pool_id)
    stop = b.use(server)
    began_wall = time.time()
    began, answered = submitted(b, server.url, pool_id, sizes)
    _, running = b.watch.wait_running(pool_id, sizes.pods, RUNNING_TIMEOUT)
    found = pool_round(
        b, pool_id, began, running[: sizes.pods], stop(), way="controller", index=index,
        submit_wall=answered - began,
    )  # fmt: skip
    found.passes = pool_passes(api, pool_id, began_wall)
    finish_controller_round(b, api, pool_id)
    return found


def direct_round(b: Burst, sizes: argparse.Namespace, index: int) -> BurstRound:
    pool_id = f"direct-{index}-{time.monotonic_ns() % 10**9}"
    manifest = pod_manifest(BURST_CONFIG, pool_id, NAMESPACE)
    create = creator(b.kube, "direct", b.args.rate, [copy.deepcopy(manifest)] * sizes.pods)

    async def all_at_once() -> float:
        began = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(sizes.pods)))
        return began

    stop = b.use()
    began = b.runner.run(all_at_once())
    added, running = b.watch.wait_running(pool_id, sizes.pods, RUNNING_TIMEOUT)
    usage = stop()
    b.cluster.delete_all(NAMESPACE)
    return BurstRound(
        way="direct",
        index=index,
        all_running=running[sizes.pods - 1] - began,
        first_added=added[0] - began,
        last_added=added[-1] - began,
        submit_wall=0.0,
        pods_created=len(added),
        process_cpu=usage.process,
        usage=usage,
    )


def static_round(
    b: Burst, api: httpx.Client, server: ServerProcess, sizes: argparse.Namespace, index: int
) -> BurstRound:
    """The same POSTs into a static pool of the same server: submission and dispatch without
    any controller pass (static pools have no Pods to keep)."""
    body = {"name": f"static-{index}-{time.monotonic_ns()}", "pool_type": "static"}
    response = api.post(POOLS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"create pool: HTTP {response.status_code}: {response.text}")
    pool_id: str = response.json()["pool_id"]
    stop = b.use(server)
    began, answered = submitted(b, server.url, pool_id, sizes)
    usage = stop()
    api.delete(f"{POOLS}/{pool_id}", params={"force": "true"}).raise_for_status()
    return BurstRound(
        way="static", index=index, all_running=0.0, first_added=0.0, last_added=0.0,
        submit_wall=answered - began, pods_created=0, process_cpu=usage.process, usage=usage,
    )  # fmt: skip


def schedule(rounds: int, ways: Sequence[str]) -> list[tuple[int, str]]:
    """(round, way) in run order: A B C, C B A, ..."""
    order: list[tuple[int, str]] = []
    for index in range(1, rounds + 1):
        order += [(index, way) for way in (ways if index % 2 else ways[::-1])]
    return order


def play(b: Burst, ways: Sequence[str], one: Callable[[int, str, argparse.Namespace], BurstRound],
         describe: Callable[[BurstRound], str]) -> None:  # fmt: skip
    """A warm-up round per way (10 Pods: connections, caches; not reported), then the rounds."""
    small = argparse.Namespace(**{**vars(b.args), "tasks": 40, "pods": 10})
    for way in ways:
        one(0, way, small)
    plan = schedule(b.args.rounds, ways)
    for step, (index, way) in enumerate(plan, start=1):
        time.sleep(b.args.settle)
        r = one(index, way, b.args)
        b.result.rounds.append(r)
        print(
            f"  [{step}/{len(plan)}] {way:<10} round {index}: all Running {r.all_running:6.3f} s "
            f"(first Pod {r.first_added:5.3f} s, last created {r.last_added:5.3f} s, "
            f"{describe(r)}{r.pods_created} Pods), others' CPU {r.usage.others:5.2f} s",
            flush=True,
        )


# -- part 2: the burst, then its diagnosis -------------------------------------------------------


def run_burst(args: argparse.Namespace) -> BurstResult:
    with burst_setup(args, "burst", pod_sync_seconds=1.0) as b:
        # The measured rounds: the server as its own process, as it is deployed.
        with (
            server_process(b.settings, b.work / "server.log") as server,
            api_client(server.url) as api,
        ):

            def one(index: int, way: str, sizes: argparse.Namespace) -> BurstRound:
                if way == "controller":
                    return controller_round(b, api, server, sizes, index)
                if way == "static":
                    return static_round(b, api, server, sizes, index)
                return direct_round(b, sizes, index)

            play(b, WAYS, one, lambda r: f"submitted {r.submit_wall:5.3f} s, ")
        # The diagnosis: the same server in a thread of this process, where its steps can be
        # timed and profiled (it shares this process's GIL with the bench's client and watch,
        # so its times are longer).
        with live_server(b.settings) as served, api_client(served.url) as api:
            diagnose(b, api, served)
        return b.result


def diagnose(b: Burst, api: httpx.Client, served: LiveServer) -> None:
    time.sleep(b.args.settle)
    b.result.instrumented = instrumented_round(b, api, served.url)
    print(f"  instrumented round: all Running {b.result.instrumented.all_running:.3f} s")
    if b.args.profile:
        time.sleep(b.args.settle)
        profiler, seconds = profiled_round(b, api, served)
        b.result.profiled_all_running = seconds
        b.result.profile = profile_text(profiler, 25)
        b.result.profile_own = hotspots(profiler, slotpool_function, top=30)
        print(f"  profiled round: all Running {seconds:.3f} s", flush=True)


# The controller's steps and the request handlers around them; a step the code no longer has
# (renamed, split) is left out, and the report shows only what was found.
STEPS: list[tuple[type, str]] = [
    (Reconciler, "_pass"),
    (SecretTokens, "ensure"),
    (Observer, "take"),
    (Observer, "_book"),
    (Executor, "apply"),
    (Executor, "create"),
    (Executor, "_record_created"),
    (Recorder, "write"),
    (KubernetesRuntime, "pods"),
    (KubernetesRuntime, "create_agent"),
    (KubernetesRuntime, "prepare"),
    (TaskService, "submit"),
    (Dispatcher, "dispatch"),
    (Dispatcher, "_one_batch"),
    (PodRepository, "observed"),
    (PodRepository, "of_pool"),
]


@contextlib.contextmanager
def instrumented(
    calls: defaultdict[str, list[float]], passes: list[dict[str, float]]
) -> Iterator[None]:
    """Time (wall, per call) the controller's steps and the request handlers around them."""
    originals = [(cls, name, getattr(cls, name)) for cls, name in STEPS if hasattr(cls, name)]

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


def instrumented_round(b: Burst, api: httpx.Client, url: str) -> Instrumented:
    pool_id = create_pool(api, f"burst-instrumented-{time.monotonic_ns()}")
    wait_for_worker(b, pool_id)
    calls: defaultdict[str, list[float]] = defaultdict(list)
    raw: list[dict[str, float]] = []
    with instrumented(calls, raw):
        began_perf = time.perf_counter()
        began, answered = submitted(b, url, pool_id, b.args)
        _, running = b.watch.wait_running(pool_id, b.args.pods, RUNNING_TIMEOUT)
    finish_controller_round(b, api, pool_id)
    passes: list[dict[str, float]] = []
    current: dict[str, float] = {}
    for entry in raw:  # the Executor.apply record comes before the _pass record around it
        current.update(entry)
        if "pass_end" in entry:
            passes.append({k: v - began_perf if k.endswith(("start", "end")) else v
                           for k, v in current.items()})  # fmt: skip
            current = {}
    return Instrumented(
        calls=dict(calls),
        passes=passes,
        submit_wall=answered - began,
        all_running=running[b.args.pods - 1] - began,
    )


def profiled_round(
    b: Burst, api: httpx.Client, served: LiveServer
) -> tuple[cProfile.Profile, float]:
    pool_id = create_pool(api, f"burst-profiled-{time.monotonic_ns()}")
    wait_for_worker(b, pool_id)
    profiler = cProfile.Profile()
    served.run_in_loop(profiler.enable)
    try:
        began, _ = submitted(b, served.url, pool_id, b.args)
        _, running = b.watch.wait_running(pool_id, b.args.pods, RUNNING_TIMEOUT)
    finally:
        served.run_in_loop(profiler.disable)
    finish_controller_round(b, api, pool_id)
    return profiler, running[b.args.pods - 1] - began


def slotpool_function(path: str, line: int, name: str) -> str | None:
    """slotpool's own functions, named by their file under ``slotpool/``."""
    if "/slotpool/" in path and "/site-packages/" not in path.replace(".venv", ""):
        return f"{path.split('/slotpool/', 1)[1]}:{line} {name}"
    return None


# -- part 2b: the burst from a queue filled beforehand -------------------------------------------


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


def cluster_pods_of(b: Burst, pool_id: str) -> list[str]:
    """The pool's Pods as the API server lists them now (the watch may lag)."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    response = b.cluster.env.client.get(path, params={"labelSelector": f"{POOL_LABEL}={pool_id}"})
    response.raise_for_status()
    return [item["metadata"]["name"] for item in response.json()["items"]]


def queued_round(b: Burst, api: httpx.Client, sizes: argparse.Namespace, index: int) -> BurstRound:
    """A new empty pool; its first pass awaited (token Secret), then one sync-deployment with
    an empty queue (it waits for any pass under way: the pool's lock); the tasks inserted in one
    transaction; then the clock: one ``sync-deployment`` to the ``pods``th Pod Running."""
    pool_id = create_pool(api, f"queued-{index}-{time.monotonic_ns()}")
    wait_for_worker(b, pool_id)
    sync = f"{POOLS}/{pool_id}/sync-deployment"
    idle = api.post(sync).raise_for_status()
    if idle.json()["created"]:
        raise RuntimeError(f"the empty pool's sync created Pods: {idle.json()['created']}")
    insert_s = b.runner.run(insert_tasks(b.settings.database_url, pool_id, sizes.tasks))
    queued = api.get(TASKS, params={"pool_id": pool_id, "status": "queued", "limit": 1}).json()
    existing, (seen, _) = cluster_pods_of(b, pool_id), b.watch.of_pool(pool_id)
    before_wall = time.time()
    earlier = pool_actions(api, pool_id, 0.0).get("create_pods", 0)
    # The background controller must not have reacted to the queue before the clock starts.
    assert queued["total"] == sizes.tasks, f"{queued['total']} of {sizes.tasks} tasks queued"
    assert not existing, f"the API server lists Pods of the pool before the clock: {existing}"
    assert not seen, f"the watch saw Pods of the pool before the clock: {seen}"
    assert not earlier, f"{earlier} create_pods events of the pool before the clock"
    stop = b.use()
    began_wall, began = time.time(), time.monotonic()
    response = api.post(sync)
    synced = time.monotonic()
    if response.status_code != 200:
        raise RuntimeError(f"sync: HTTP {response.status_code}: {response.text}")
    _, running = b.watch.wait_running(pool_id, sizes.pods, RUNNING_TIMEOUT)
    found = pool_round(
        b, pool_id, began, running[: sizes.pods], stop(), way="queued", index=index,
        submit_wall=synced - began, sync_created=len(response.json()["created"]),
        insert_s=insert_s,
    )  # fmt: skip
    found.passes = pool_passes(api, pool_id, began_wall)
    found.actions = pool_actions(api, pool_id, before_wall)
    finish_controller_round(b, api, pool_id)
    return found


def run_burst_queued(args: argparse.Namespace) -> BurstResult:
    with (
        burst_setup(args, "burst-queued", pod_sync_seconds=QUEUED_SYNC_SECONDS) as b,
        live_server(b.settings) as served,
        api_client(served.url) as api,
    ):

        def one(index: int, way: str, sizes: argparse.Namespace) -> BurstRound:
            if way == "queued":
                return queued_round(b, api, sizes, index)
            return direct_round(b, sizes, index)

        def describe(r: BurstRound) -> str:
            if r.way != "queued":
                return ""
            return (
                f"sync answered {r.submit_wall:5.3f} s ({r.sync_created} created by it), "
                f"insert {r.insert_s:5.3f} s, events {r.actions}, "
            )

        play(b, QUEUED_WAYS, one, describe)
        return b.result
