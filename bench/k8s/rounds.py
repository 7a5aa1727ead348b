"""The rounds of the Pod creation benchmark: Pods created through the runtime and directly,
timed until the watch sees them Running, the runtime's own work in isolation."""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import gc
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Pod

from bench.harness.cluster import Cluster, PodWatch, creator, pod_manifest
from bench.harness.cpu import Reading, Use, process_seconds
from bench.harness.machine import Conditions
from bench.harness.profile import Hotspot, hotspots, profile_text, total_seconds, where
from bench.harness.report import Paired
from bench.harness.stats import quantile
from slotpool.runtime import kubernetes as runtime_module
from slotpool.runtime.kubernetes import FIELD_MANAGER

NAMESPACE = "slotpool-bench"
MODES = ("runtime", "direct")
# Small enough that 100 Pods fit on 3 fake Nodes of 4 CPU / 16Gi / 110 Pods each.
POD_CONFIG: dict[str, Any] = {
    "image": "ghcr.io/acme/agent:1.4",
    "env": {"TF_LOG": "INFO"},
    "resources": {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "100m", "memory": "128Mi"},
    },
}
RUNNING_TIMEOUT = 180.0
MICRO_RUNS = 2000
# What the runtime adds, and the client's main costs: (file suffix or "", name substring).
WATCHED_FUNCTIONS = (
    ("slotpool/runtime/kubernetes.py", ""),
    ("lightkube/core/async_client.py", "create"),
    ("lightkube/core/generic_client.py", "build_adapter_request"),
    ("lightkube/core/generic_client.py", "handle_response"),
    ("", "do_handshake"),
    ("", "msgspec"),
)
OWN_STEPS = ("_pod_from_manifest", "runtime_pod")


def rate_name(rate: float) -> str:
    return "off" if math.isinf(rate) else f"{rate:g}/s"


def cluster_reading(cluster: Cluster) -> Reading:
    return Reading.now({name: process_seconds(pid) for name, pid, _ in cluster.env.processes()})


class GcMeter:
    """Counts the garbage collector's passes (per generation) and their CPU time, in the thread
    that created the meter: a full collection of this process's heap (lightkube's models, pydantic,
    the API's modules) costs tens of ms and lands on whatever allocates at the time."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._thread = threading.get_ident()
        self._started = 0.0

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._started = time.thread_time()
        else:
            generation = info["generation"]
            self.passes[generation] += 1
            self.seconds[generation] += time.thread_time() - self._started

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds)


# -- one round -------------------------------------------------------------------------------------


@dataclass
class Round:
    mode: str
    rate: float
    index: int
    pods: int
    create_wall: float  # s: first create call to the last answer
    create_cpu: float  # s: CPU of the thread issuing the creates, meanwhile
    process_cpu: float  # s: CPU of the whole process, meanwhile (the watch thread included)
    call_ms: list[float]  # per Pod: create call to its answer (bucket wait included)
    to_running_ms: list[float]  # per Pod: create call to Running
    answer_to_running_ms: list[float]  # per Pod: create answer to Running
    all_running: float  # s: first create call to the last Pod Running
    usage: Use  # first create call to the last Pod Running
    gc: GcMeter  # the garbage collector's passes in the creating thread, during the creates
    first_created: Any = None
    profile: str = ""
    hotspots: list[Hotspot] = field(default_factory=list)
    profiled_seconds: float = 0.0

    @property
    def running_p50(self) -> float:
        return quantile(self.to_running_ms, 50)

    @property
    def running_p99(self) -> float:
        return quantile(self.to_running_ms, 99)


async def run_round(
    cluster: Cluster,
    client: AsyncClient,
    watch: PodWatch,
    *,
    mode: str,
    rate: float,
    index: int,
    pods: int,
    profile: bool = False,
) -> Round:
    pool_id = f"bench-{mode}-{'off' if math.isinf(rate) else f'{rate:g}'}-{index}"
    manifest = pod_manifest(POD_CONFIG, pool_id, NAMESPACE)
    create = creator(client, mode, rate, [copy.deepcopy(manifest) for _ in range(pods)])
    starts, answers, names = [0.0] * pods, [0.0] * pods, [""] * pods
    first: list[Any] = [None]

    async def timed(i: int) -> None:
        starts[i] = time.monotonic()
        names[i], created = await create(i)
        answers[i] = time.monotonic()
        if i == 0:
            first[0] = created

    profiler = cProfile.Profile() if profile else None
    before = cluster_reading(cluster)
    thread_before = time.thread_time()
    began = time.monotonic()
    if profiler is not None:
        profiler.enable()
    with GcMeter() as collections:
        await asyncio.gather(*(timed(i) for i in range(pods)))
    if profiler is not None:
        profiler.disable()
    create_wall = time.monotonic() - began
    create_cpu = time.thread_time() - thread_before
    process_cpu = time.process_time() - before.process
    running = await all_running(watch, names)
    return Round(
        mode=mode,
        rate=rate,
        index=index,
        pods=pods,
        create_wall=create_wall,
        create_cpu=create_cpu,
        process_cpu=process_cpu,
        call_ms=[(a - s) * 1000 for s, a in zip(starts, answers, strict=True)],
        to_running_ms=[(r - s) * 1000 for s, r in zip(starts, running, strict=True)],
        answer_to_running_ms=[(r - a) * 1000 for a, r in zip(answers, running, strict=True)],
        all_running=max(running) - began,
        usage=Use.between(before, cluster_reading(cluster)),
        gc=collections,
        first_created=first[0],
        profile=profile_text(profiler, 18) if profiler is not None else "",
        hotspots=hotspots(profiler, watched) if profiler is not None else [],
        profiled_seconds=total_seconds(profiler) if profiler is not None else 0.0,
    )


async def all_running(watch: PodWatch, names: list[str]) -> list[float]:
    """When each of ``names`` was first seen Running, once all of them were."""
    deadline = time.monotonic() + RUNNING_TIMEOUT
    while not all(name in watch.running for name in names):
        watch.check()
        if time.monotonic() > deadline:
            missing = sum(name not in watch.running for name in names)
            raise RuntimeError(
                f"{missing} of {len(names)} Pods not Running after {RUNNING_TIMEOUT} s"
            )
        await asyncio.sleep(0.02)
    return [watch.running[name] for name in names]


def watched(path: str, line: int, name: str) -> str | None:
    for suffix, part in WATCHED_FUNCTIONS:
        if (not suffix or path.endswith(suffix)) and part in name:
            return where(path, line, name)
    return None


# -- the runtime's own work, in isolation ---------------------------------------------------------


@dataclass(frozen=True)
class OwnWork:
    """CPU microseconds per Pod of the steps the runtime adds around ``client.create``."""

    from_dict_us: float  # Pod.from_dict(manifest): what building a Pod from the builder costs
    pod_from_manifest_us: float  # the runtime's: from_dict + to_dict + the round-trip check
    runtime_pod_us: float  # the answer as a RuntimePod


def own_work(manifest: dict[str, Any], created: Pod, runs: int = MICRO_RUNS) -> OwnWork:
    def per_call_us(call: Callable[[], object]) -> float:
        best = math.inf
        for _ in range(3):
            start = time.thread_time()
            for _ in range(runs):
                call()
            best = min(best, (time.thread_time() - start) / runs * 1e6)
        return best

    return OwnWork(
        from_dict_us=per_call_us(lambda: Pod.from_dict(manifest)),
        pod_from_manifest_us=per_call_us(lambda: runtime_module._pod_from_manifest(manifest)),
        runtime_pod_us=per_call_us(lambda: runtime_module.runtime_pod(created)),
    )


# -- the whole run ---------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    started: datetime
    conditions: Conditions
    server_version: str = "?"
    cluster_start_s: float = 0.0
    seconds: float = 0.0
    rounds: list[Round] = field(default_factory=list)
    usage: Use | None = None
    measured_seconds: float = 0.0
    own: OwnWork | None = None
    profiles: dict[str, Round] = field(default_factory=dict)
    watch_events: int = 0

    def of(self, rate: float, mode: str) -> list[Round]:
        return [r for r in self.rounds if r.rate == rate and r.mode == mode]

    def paired(self, rate: float) -> Paired[Round]:
        return Paired(self.of(rate, "runtime"), self.of(rate, "direct"))


def schedule(rates: Sequence[float], rounds: int) -> list[tuple[float, int, str]]:
    """(rate, round, mode) in run order: A B, B A, A B, ... per rate."""
    order: list[tuple[float, int, str]] = []
    for rate in rates:
        for index in range(1, rounds + 1):
            modes = MODES if index % 2 == 1 else MODES[::-1]
            order.extend((rate, index, mode) for mode in modes)
    return order


async def measure(cluster: Cluster, run: Run) -> None:
    client = AsyncClient(KubeConfig.from_file(cluster.env.kubeconfig), field_manager=FIELD_MANAGER)
    try:
        with PodWatch(cluster.env, NAMESPACE) as watch:
            await rounds(cluster, client, watch, run)
            run.watch_events = watch.events
    finally:
        await client.close()


async def rounds(cluster: Cluster, client: AsyncClient, watch: PodWatch, run: Run) -> None:
    args = run.args

    async def one(mode: str, rate: float, index: int, profile: bool = False) -> Round:
        found = await run_round(
            cluster, client, watch, mode=mode, rate=rate, index=index, pods=args.pods,
            profile=profile,
        )  # fmt: skip
        cluster.delete_all(NAMESPACE)
        return found

    for mode in MODES:  # warm-up: connections, imports, caches; not reported
        await one(mode, math.inf, 0)
    plan = schedule(args.rates, args.rounds)
    machine_before = cluster_reading(cluster)
    began = time.monotonic()
    for step, (rate, index, mode) in enumerate(plan, start=1):
        await asyncio.sleep(args.settle)
        result = await one(mode, rate, index)
        run.rounds.append(result)
        print(
            f"[{step:>2}/{len(plan)}] {mode:<7} limit {rate_name(rate):<6} round {index}: "
            f"create {result.create_wall:6.3f} s, CPU {result.create_cpu:5.3f} s "
            f"(GC {result.gc.total_seconds:5.3f} s), "
            f"Running p50 {result.running_p50:7.1f} ms p99 {result.running_p99:7.1f} ms, "
            f"all {result.all_running:6.3f} s, others' CPU {result.usage.others:5.2f} s",
            flush=True,
        )
    run.measured_seconds = time.monotonic() - began
    run.usage = Use.between(machine_before, cluster_reading(cluster))
    sample = next((r.first_created for r in run.rounds if r.mode == "direct"), None)
    if isinstance(sample, Pod):
        run.own = own_work(pod_manifest(POD_CONFIG, "bench-micro", NAMESPACE), sample)
    if args.profile:
        for mode in MODES:
            await asyncio.sleep(args.settle)
            run.profiles[mode] = await one(mode, math.inf, 99, profile=True)
