"""Pod creation through slotpool's Kubernetes runtime against the same client creating Pods.

One run starts the test cluster of ``tests/k8s_env.py`` (etcd, kube-apiserver, scheduler,
controller-manager and kwok with 3 fake Nodes of 4 CPUs) and, in one namespace that enforces the
``restricted`` Pod Security Standard, creates batches of Pods (100 by default) two ways:

* ``runtime``: ``KubernetesRuntime.create_pod(manifest)``, the manifest from the one Pod builder
  (``slotpool.domain.manifest.build_pod_manifest``), i.e. what the controller does: the manifest is
  turned into lightkube's ``Pod`` and checked for dropped fields, the call goes through the
  runtime's token bucket and error mapping, and the answer becomes a ``RuntimePod``;
* ``direct``: the same lightkube ``AsyncClient`` (one client for both) sending ``client.create``
  with ``Pod`` objects made from the same manifests before the clock starts, behind a
  ``TokenBucket`` of the same rate (the runtime's own class), i.e. the least a caller must do.

Both at a rate limit (50 requests/s by default) and with the limit off (``math.inf``). A batch is
issued at once (``asyncio.gather`` of the creates). Per round it measures the wall time to issue
every create (first call to last answer), the CPU time of the thread that issues them (the watch
below runs in a thread of its own so it is not counted; the whole process's CPU is recorded too),
and, per Pod, the time from its create call to the watch seeing it ``Running`` (kwok plays the
kubelet), p50/p99 and the time until all are Running. Rounds alternate between the two ways
(A B, B A, A B, ...) so the machine's noise hits both alike; every Pod is deleted (grace 0) and
gone before the next round. One unmeasured warm-up round per way opens the connections first.

After the measured rounds, the runtime's own per-Pod work (manifest to ``Pod`` with the
round-trip check, answer to ``RuntimePod``) is timed in isolation, and one more round per way
runs under cProfile (its numbers are not used) to show where the CPU goes.

Results are printed and written to ``bench/K8S.md`` with the machine's details. Run it with
``scripts/bench k8s`` or ``.venv/bin/python bench/bench_k8s.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Pod

from bench_api import ROOT, cpu_check_ms, cpu_description, read_first
from bench_dispatch import busy_processes, code_fingerprint, cpu_seconds, machine_busy_seconds
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.manifest import MANAGED_BY, MANAGED_BY_LABEL, PodContext, build_pod_manifest
from slotpool.runtime import kubernetes as runtime_module
from slotpool.runtime.kubernetes import FIELD_MANAGER, KubernetesRuntime, TokenBucket

if TYPE_CHECKING:
    from tests.k8s_env import K8sTestEnv

DEFAULT_OUTPUT = ROOT / "bench" / "K8S.md"
NAMESPACE = "slotpool-bench"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
CONTROL_PLANE_URL = "http://slotpool.example:8080"
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
DELETE_TIMEOUT = 120.0
WATCH_WINDOW_SECONDS = 5  # each watch request ends after this long and is reopened
MICRO_RUNS = 2000


def repo_importable() -> None:
    """``tests`` (the cluster) is imported from the repository, not installed."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def rate_name(rate: float) -> str:
    return "off" if math.isinf(rate) else f"{rate:g}/s"


def quantile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); the median for 50."""
    if q == 50:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- watching for Running --------------------------------------------------------------------------


class RunningWatch:
    """Watches the namespace's slotpool Pods from a thread of its own (a plain ``httpx`` stream, so
    it costs the measured thread nothing) and records when each Pod was first seen Running, in
    ``time.monotonic()`` seconds (one clock for every thread)."""

    def __init__(self, env: K8sTestEnv, namespace: str) -> None:
        self.running: dict[str, float] = {}
        self.events = 0
        self.error: BaseException | None = None
        self._env = env
        self._path = f"/api/v1/namespaces/{namespace}/pods"
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="running-watch", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the Pod watch did not start")
        self.check()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WATCH_WINDOW_SECONDS + 10.0)

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the Pod watch failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            timeout = httpx.Timeout(10.0, read=WATCH_WINDOW_SECONDS + 30.0)
            with httpx.Client(
                base_url=self._env.server, verify=self._env.ssl_context(), timeout=timeout
            ) as client:
                listing = client.get(self._path, params={"labelSelector": SELECTOR})
                listing.raise_for_status()
                version: str = listing.json()["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    version = self._watch(client, version)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    def _watch(self, client: httpx.Client, version: str) -> str:
        params = {
            "watch": "true",
            "labelSelector": SELECTOR,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_WINDOW_SECONDS),
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
                phase = (pod.get("status") or {}).get("phase")
                if event["type"] in ("ADDED", "MODIFIED") and phase == "Running":
                    self.running.setdefault(pod["metadata"]["name"], seen)
        return version


# -- CPU of the cluster and of the machine --------------------------------------------------------


@dataclass(frozen=True)
class CpuReading:
    process: float  # this process, every thread
    cluster: dict[str, float]  # per component
    machine: float  # every CPU of the machine, busy seconds

    @classmethod
    def now(cls, env: K8sTestEnv) -> CpuReading:
        cluster = {}
        for name, pid, _ in env.processes():
            user, system, _children = cpu_seconds(pid)
            cluster[name] = user + system
        return cls(time.process_time(), cluster, machine_busy_seconds())


@dataclass(frozen=True)
class CpuUse:
    process: float
    cluster: dict[str, float]
    others: float  # the rest of the machine: other users' processes (tests, builds, ...)

    @classmethod
    def between(cls, before: CpuReading, after: CpuReading) -> CpuUse:
        cluster = {
            name: after.cluster[name] - before.cluster.get(name, 0.0) for name in after.cluster
        }
        process = after.process - before.process
        others = after.machine - before.machine - process - sum(cluster.values())
        return cls(process, cluster, max(0.0, others))

    @property
    def cluster_total(self) -> float:
        return sum(self.cluster.values())


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
    usage: CpuUse  # first create call to the last Pod Running
    gc: GcMeter  # the garbage collector's passes in the creating thread, during the creates
    first_created: Any = None
    profile: str = ""
    hotspots: list[tuple[str, int, float, float]] = field(default_factory=list)
    profiled_seconds: float = 0.0

    @property
    def running_p50(self) -> float:
        return quantile(self.to_running_ms, 50)

    @property
    def running_p99(self) -> float:
        return quantile(self.to_running_ms, 99)


def pod_manifest(pool_id: str) -> dict[str, Any]:
    config = parse_config(copy.deepcopy(POD_CONFIG), pool_type=PoolType.k8s)
    context = PodContext(pool_id, control_plane_url=CONTROL_PLANE_URL, default_namespace=NAMESPACE)
    return build_pod_manifest(config, context)


Create = Callable[[int], Awaitable[tuple[str, Any]]]


def creator(client: AsyncClient, mode: str, rate: float, manifests: list[dict[str, Any]]) -> Create:
    """The create of one Pod, by index; everything not part of the call is prepared here."""
    if mode == "runtime":
        runtime = KubernetesRuntime(client=client, requests_per_second=rate)

        async def through_runtime(i: int) -> tuple[str, Any]:
            created = await runtime.create_pod(manifests[i])
            return created.name, created

        return through_runtime
    bucket = TokenBucket(rate)
    objects = [cast(Pod, Pod.from_dict(manifest)) for manifest in manifests]

    async def directly(i: int) -> tuple[str, Any]:
        await bucket.acquire()
        created = await client.create(objects[i])
        return (created.metadata.name if created.metadata else None) or "", created

    return directly


async def run_round(
    env: K8sTestEnv,
    client: AsyncClient,
    watch: RunningWatch,
    *,
    mode: str,
    rate: float,
    index: int,
    pods: int,
    profile: bool = False,
) -> Round:
    pool_id = f"bench-{mode}-{'off' if math.isinf(rate) else f'{rate:g}'}-{index}"
    manifest = pod_manifest(pool_id)
    create = creator(client, mode, rate, [copy.deepcopy(manifest) for _ in range(pods)])
    starts = [0.0] * pods
    answers = [0.0] * pods
    names = [""] * pods
    first: list[Any] = [None]

    async def timed(i: int) -> None:
        starts[i] = time.monotonic()
        names[i], created = await create(i)
        answers[i] = time.monotonic()
        if i == 0:
            first[0] = created

    profiler = cProfile.Profile() if profile else None
    before = CpuReading.now(env)
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

    deadline = time.monotonic() + RUNNING_TIMEOUT
    while not all(name in watch.running for name in names):
        watch.check()
        if time.monotonic() > deadline:
            missing = sum(name not in watch.running for name in names)
            raise RuntimeError(f"{missing} of {pods} Pods not Running after {RUNNING_TIMEOUT} s")
        await asyncio.sleep(0.02)
    usage = CpuUse.between(before, CpuReading.now(env))
    running = [watch.running[name] for name in names]
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
        usage=usage,
        gc=collections,
        first_created=first[0],
        profile=profile_text(profiler) if profiler is not None else "",
        hotspots=hotspots(profiler) if profiler is not None else [],
        profiled_seconds=profiled_seconds(profiler) if profiler is not None else 0.0,
    )


def profile_text(profiler: cProfile.Profile, top: int = 18) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    # Shorten site-packages paths: the function names are what matter.
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in (sys.prefix, sys.base_prefix):
        text = text.replace(f"{prefix}/lib/{version}/", "")
    text = text.replace(str(ROOT) + "/", "")
    lines = [line.rstrip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return "\n".join(line for line in lines[start:] if line)


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


def profiled_seconds(profiler: cProfile.Profile) -> float:
    total: float = pstats.Stats(profiler).total_tt  # type: ignore[attr-defined]
    return total


def hotspots(profiler: cProfile.Profile) -> list[tuple[str, int, float, float]]:
    """(function, calls, own s, cumulative s) of the functions in ``WATCHED_FUNCTIONS``."""
    found = []
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (path, line, name), (_, calls, own, cumulative, _) in table.items():
        for suffix, part in WATCHED_FUNCTIONS:
            if (not suffix or path.endswith(suffix)) and part in name:
                where = f"{Path(path).name}:{line} " if path != "~" else ""
                found.append((f"{where}{name}", calls, own, cumulative))
                break
    return sorted(found, key=lambda row: -row[3])


def delete_all(env: K8sTestEnv) -> None:
    """Delete every slotpool Pod of the namespace at once (grace 0) and wait until none is left."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    response = env.client.delete(path, params={"labelSelector": SELECTOR, "gracePeriodSeconds": 0})
    response.raise_for_status()
    deadline = time.monotonic() + DELETE_TIMEOUT
    while True:
        listing = env.client.get(path, params={"labelSelector": SELECTOR, "limit": 1})
        listing.raise_for_status()
        if not listing.json()["items"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Pods still present {DELETE_TIMEOUT} s after deleting them")
        time.sleep(0.1)


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
    machine: dict[str, str]
    versions: dict[str, str]
    server_version: str
    load_before: str
    busy_before: list[str]
    cpu_check_before: float
    cpu_check_after: float = 0.0
    cluster_start_s: float = 0.0
    seconds: float = 0.0
    rounds: list[Round] = field(default_factory=list)
    usage: CpuUse | None = None
    measured_seconds: float = 0.0
    own: OwnWork | None = None
    profiles: dict[str, Round] = field(default_factory=dict)
    watch_events: int = 0

    def of(self, rate: float, mode: str) -> list[Round]:
        return [r for r in self.rounds if r.rate == rate and r.mode == mode]


def schedule(rates: Sequence[float], rounds: int) -> list[tuple[float, int, str]]:
    """(rate, round, mode) in run order: A B, B A, A B, ... per rate."""
    order: list[tuple[float, int, str]] = []
    for rate in rates:
        for index in range(1, rounds + 1):
            modes = MODES if index % 2 == 1 else MODES[::-1]
            order.extend((rate, index, mode) for mode in modes)
    return order


async def measure(env: K8sTestEnv, run: Run) -> None:
    args = run.args
    client = AsyncClient(KubeConfig.from_file(env.kubeconfig), field_manager=FIELD_MANAGER)
    watch = RunningWatch(env, NAMESPACE)
    watch.start()
    try:
        for mode in MODES:  # warm-up: connections, imports, caches; not reported
            await run_round(env, client, watch, mode=mode, rate=math.inf, index=0, pods=args.pods)
            delete_all(env)
        plan = schedule(args.rates, args.rounds)
        machine_before = CpuReading.now(env)
        began = time.monotonic()
        for step, (rate, index, mode) in enumerate(plan, start=1):
            await asyncio.sleep(args.settle)
            result = await run_round(
                env, client, watch, mode=mode, rate=rate, index=index, pods=args.pods
            )
            run.rounds.append(result)
            print(
                f"[{step:>2}/{len(plan)}] {mode:<7} limit {rate_name(rate):<6} round {index}: "
                f"create {result.create_wall:6.3f} s, CPU {result.create_cpu:5.3f} s "
                f"(GC {result.gc.total_seconds:5.3f} s), "
                f"Running p50 {result.running_p50:7.1f} ms p99 {result.running_p99:7.1f} ms, "
                f"all {result.all_running:6.3f} s, others' CPU {result.usage.others:5.2f} s",
                flush=True,
            )
            delete_all(env)
        run.measured_seconds = time.monotonic() - began
        run.usage = CpuUse.between(machine_before, CpuReading.now(env))
        sample = next((r.first_created for r in run.rounds if r.mode == "direct"), None)
        if isinstance(sample, Pod):
            run.own = own_work(pod_manifest("bench-micro"), sample)
        if args.profile:
            for mode in MODES:
                await asyncio.sleep(args.settle)
                run.profiles[mode] = await run_round(
                    env, client, watch, mode=mode, rate=math.inf, index=99, pods=args.pods,
                    profile=True,
                )  # fmt: skip
                delete_all(env)
        run.watch_events = watch.events
    finally:
        watch.stop()
        await client.close()


def prepare_namespace(env: K8sTestEnv) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": RESTRICTED},
    }
    response = env.client.post("/api/v1/namespaces", json=body)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"create namespace: HTTP {response.status_code}: {response.text}")
    env.wait_for_service_account(NAMESPACE)


# -- the report ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    memory_kb = read_first("/proc/meminfo", "MemTotal")
    memory = "?"
    if memory_kb and memory_kb.split()[0].isdigit():
        memory = f"{int(memory_kb.split()[0]) / 1024 / 1024:.1f} GiB"
    os_name = (read_first("/etc/os-release", "PRETTY_NAME=") or platform.system()).strip('"\n')
    versions = []
    for package in ("lightkube", "lightkube-models", "httpx2", "anyio", "pydantic", "uvloop"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return {
        "CPU": cpu_description(),
        "CPUs (nproc)": str(len(os.sched_getaffinity(0))),
        "Memory": memory,
        "OS": f"{os_name}, kernel {platform.release()} ({platform.machine()})",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Libraries": ", ".join(versions),
    }


def median_of(rounds: list[Round], value: Callable[[Round], float]) -> float:
    return statistics.median(value(r) for r in rounds)


METRICS: tuple[tuple[str, str, Callable[[Round], float]], ...] = (
    ("create wall time (100 creates)", "s", lambda r: r.create_wall),
    ("CPU of the creating thread", "s", lambda r: r.create_cpu),
    ("  of which garbage collection", "s", lambda r: r.gc.total_seconds),
    ("  full (generation 2) collections", "n", lambda r: r.gc.passes[2]),
    ("CPU of the creating thread without GC", "s", lambda r: r.create_cpu - r.gc.total_seconds),
    ("CPU of the whole bench process", "s", lambda r: r.process_cpu),
    ("create call to answer, p50", "ms", lambda r: quantile(r.call_ms, 50)),
    ("create call to Running, p50", "ms", lambda r: r.running_p50),
    ("create call to Running, p99", "ms", lambda r: r.running_p99),
    ("answer to Running, p50", "ms", lambda r: quantile(r.answer_to_running_ms, 50)),
    ("time to all Running", "s", lambda r: r.all_running),
    ("cluster CPU (5 processes) per round", "s", lambda r: r.usage.cluster_total),
)
RATIO_METRICS = frozenset(
    {
        "create wall time (100 creates)",
        "CPU of the creating thread",
        "CPU of the creating thread without GC",
        "create call to Running, p50",
        "create call to Running, p99",
        "time to all Running",
    }
)


def fmt(value: float, unit: str) -> str:
    if unit == "n":
        return f"{value:g}"
    return f"{value:.1f}" if unit == "ms" else f"{value:.3f}"


def ratio_cells(run: Run, rate: float, value: Callable[[Round], float]) -> tuple[float, str]:
    """The ratio of the medians, and the range of the ratios of paired rounds."""
    runtime, direct = run.of(rate, "runtime"), run.of(rate, "direct")
    denominator = median_of(direct, value)
    ratio = median_of(runtime, value) / denominator if denominator > 0 else math.nan
    pairs = paired(run, rate, value)
    spread = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
    return ratio, spread


def paired(run: Run, rate: float, value: Callable[[Round], float]) -> list[float]:
    """runtime / direct of each pair of rounds (round i of each way, run next to each other)."""
    pairs = zip(run.of(rate, "runtime"), run.of(rate, "direct"), strict=True)
    return [value(a) / value(b) for a, b in pairs if value(b) > 0]


def summary_rows(run: Run, rate: float) -> list[str]:
    lines = [
        f"### Limit {rate_name(rate)} ({run.args.rounds} rounds each, medians of the rounds)",
        "",
        "| measure | runtime | direct | runtime / direct | paired rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, unit, value in METRICS:
        runtime = median_of(run.of(rate, "runtime"), value)
        direct = median_of(run.of(rate, "direct"), value)
        ratio, spread = ratio_cells(run, rate, value)
        strong = "**" if name in RATIO_METRICS else ""
        shown = "-" if unit == "n" or math.isnan(ratio) else f"{strong}{ratio:.2f}{strong}"
        lines.append(
            f"| {name} ({unit}) | {fmt(runtime, unit)} | {fmt(direct, unit)} "
            f"| {shown} | {spread if unit != 'n' else '-'} |"
        )
    pooled = []
    for mode in MODES:
        samples = [ms for r in run.of(rate, mode) for ms in r.to_running_ms]
        pooled.append(
            f"{mode} p50 {quantile(samples, 50):.1f} ms, p99 {quantile(samples, 99):.1f} ms"
        )
    lines += ["", f"All {run.args.rounds * run.args.pods} Pods pooled, call to Running: "
              + "; ".join(pooled) + "."]  # fmt: skip
    return lines


def round_rows(run: Run) -> list[str]:
    lines = [
        "| # | limit | way | create s | thread CPU s | GC s (full passes) | process CPU s "
        "| call p50 ms "
        "| Running p50 ms | Running p99 ms | all Running s | cluster CPU s | others' CPU s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step, r in enumerate(run.rounds, start=1):
        lines.append(
            f"| {step} | {rate_name(r.rate)} | {r.mode} | {r.create_wall:.3f} | {r.create_cpu:.3f} "
            f"| {r.gc.total_seconds:.3f} ({r.gc.passes[2]}) "
            f"| {r.process_cpu:.3f} | {quantile(r.call_ms, 50):.1f} | {r.running_p50:.1f} "
            f"| {r.running_p99:.1f} | {r.all_running:.3f} | {r.usage.cluster_total:.2f} "
            f"| {r.usage.others:.2f} |"
        )
    return lines


def cpu_ratio_off(run: Run) -> float:
    return (
        ratio_cells(run, math.inf, lambda r: r.create_cpu)[0] if math.inf in run.args.rates else 1.0
    )


def own_work_rows(run: Run) -> list[str]:
    own = run.own
    if own is None:
        return ["(not measured)"]
    direct = [r for r in run.rounds if r.mode == "direct"]
    runtime = [r for r in run.rounds if r.mode == "runtime"]
    per_direct = median_of(direct, lambda r: r.create_cpu / r.pods) * 1e6
    per_runtime = median_of(runtime, lambda r: r.create_cpu / r.pods) * 1e6
    extra = own.pod_from_manifest_us + own.runtime_pod_us
    return [
        f"CPU per Pod in isolation (best of 3 x {MICRO_RUNS} calls, one thread):",
        "",
        "| step | us per Pod |",
        "|---|---:|",
        f"| `Pod.from_dict(manifest)` alone (a direct caller starting from the builder's dict "
        f"pays this too) | {own.from_dict_us:.0f} |",
        f"| runtime: `_pod_from_manifest` (`from_dict` + `to_dict` + round-trip check) "
        f"| {own.pod_from_manifest_us:.0f} |",
        f"| runtime: `runtime_pod(answer)` | {own.runtime_pod_us:.0f} |",
        f"| **runtime's own work, total** | **{extra:.0f}** |",
        f"| measured: creating-thread CPU per Pod, direct (median of all its rounds) "
        f"| {per_direct:.0f} |",
        f"| measured: creating-thread CPU per Pod, runtime (median of all its rounds) "
        f"| {per_runtime:.0f} |",
        "",
        f"Measured difference runtime - direct: {per_runtime - per_direct:+.0f} us per Pod, "
        f"against {extra:.0f} us of the runtime's own steps; the rest of any difference, either "
        "way, is the machine's noise (and the `_call` wrapper's few coroutine and lambda calls).",
    ]


def interpretation(run: Run) -> list[str]:
    lines = []
    for rate in run.args.rates:
        wall, _ = ratio_cells(run, rate, lambda r: r.create_wall)
        cpu, _ = ratio_cells(run, rate, lambda r: r.create_cpu)
        ready, _ = ratio_cells(run, rate, lambda r: r.all_running)
        p50, _ = ratio_cells(run, rate, lambda r: r.running_p50)
        lines.append(
            f"* Limit {rate_name(rate)}: runtime / direct = {wall:.2f} (create wall time), "
            f"{cpu:.2f} (CPU of the creating thread), {p50:.2f} (call to Running p50), "
            f"{ready:.2f} (time to all Running)."
        )
    if run.own is not None:
        own_s = (run.own.pod_from_manifest_us + run.own.runtime_pod_us) * run.args.pods / 1e6
        parts, outside = [], []
        for rate in run.args.rates:
            direct_cpu = median_of(run.of(rate, "direct"), lambda r: r.create_cpu)
            ratio, _ = ratio_cells(run, rate, lambda r: r.create_cpu)
            pairs = paired(run, rate, lambda r: r.create_cpu)
            parts.append(
                f"{1 + own_s / direct_cpu:.3f} expected vs {ratio:.2f} measured at "
                f"limit {rate_name(rate)}"
            )
            if pairs and not min(pairs) <= 1.0 <= max(pairs):
                outside.append(rate_name(rate))
        verdict = (
            "every paired-round range of the CPU ratio includes 1.00: the runtime's overhead is "
            "below what this machine, shared as it was, can resolve; what a Pod waits for is the "
            "token bucket, the HTTP client and the cluster, the same both ways"
            if not outside
            else f"the paired-round CPU ratios exclude 1.00 at limit {', '.join(outside)}: see "
            "the profile for where the difference comes from"
        )
        lines.append(
            f"* The runtime's own steps cost {own_s * 1000:.1f} ms of CPU per {run.args.pods} "
            f"Pods (isolated timing below), so the CPU ratio they explain is "
            f"{'; '.join(parts)}; {verdict}."
        )
    limited = [rate for rate in run.args.rates if not math.isinf(rate)]
    for rate in limited:
        floor = (run.args.pods - 1) / rate
        lines.append(
            f"* At {rate_name(rate)} the token bucket alone spaces {run.args.pods} creates over "
            f"{floor:.2f} s, so both ways' wall time is the bucket's schedule plus one request: "
            "the ratio there says the runtime keeps to the schedule, not how fast it is."
        )
    for mode, result in run.profiles.items():
        own = sum(c for name, _, _, c in result.hotspots if name.endswith(OWN_STEPS))
        shakes = [(n, c) for name, n, _, c in result.hotspots if "do_handshake" in name]
        calls, seconds = shakes[0] if shakes else (0, 0.0)
        text = (
            f"* Profiled {mode} round (limit off): {result.profiled_seconds:.3f} s in the creating "
            f"thread, of which the runtime's own steps (`_pod_from_manifest`, `runtime_pod`) "
            f"{own:.3f} s (cProfile inflates their many small Python calls; the isolated timing "
            f"below is their real cost) and TLS handshakes {seconds:.3f} s ({calls} "
            "`do_handshake` calls"
        )
        if calls:
            text += (
                f": the client keeps at most 20 idle connections, so {run.args.pods} concurrent "
                "creates open new ones each round"
            )
        lines.append(text + ").")
    if run.usage is not None and run.measured_seconds > 0:
        share = run.usage.others / run.measured_seconds * 100
        lines.append(
            f"* The machine has {run.machine['CPUs (nproc)']} CPUs, shared by this process, the "
            "5 cluster processes, and whatever else runs (other engineers' test runs during this "
            f"one): other processes used {run.usage.others:.1f} CPU-s over the "
            f"{run.measured_seconds:.0f} s of measured rounds ({share:.0f}% of one CPU), the "
            f"cluster {run.usage.cluster_total:.1f} CPU-s, this process "
            f"{run.usage.process:.1f} CPU-s. Absolute times move with that load; interleaving "
            "the two ways is what keeps the ratios comparable (see the paired-round ranges)."
        )
    return lines


def report(run: Run) -> str:
    args = run.args
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        [".venv/bin/python", "bench/bench_k8s.py", *sys.argv[1:]]
    )
    versions = ", ".join(f"{name} {version}" for name, version in run.versions.items())
    lines = [
        "# slotpool Kubernetes runtime: Pod creation benchmark",
        "",
        f"* Date: {run.started:%Y-%m-%d %H:%M:%S} UTC (whole run: {run.seconds:.0f} s, of which "
        f"cluster start {run.cluster_start_s:.0f} s)",
        f"* Command: `{command}`",
        f"* Code: {code_fingerprint()}",
        f"* Kubernetes (pinned in `scripts/k8s-testenv`): {versions}; API server reports "
        f"{run.server_version}",
        "* Cluster: `tests/k8s_env.py` on this machine: etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler and kwok with 3 fake Nodes (4 CPU, 16Gi, 110 "
        f"Pods each); namespace `{NAMESPACE}` enforcing the `restricted` Pod Security Standard.",
        f"* Pods: `build_pod_manifest` of `{json.dumps(POD_CONFIG)}` (one pool id per round, "
        "`generateName`); they become Running when kwok marks them so.",
        f"* Rounds: {args.pods} creates at once (`asyncio.gather`) per round, {args.rounds} rounds "
        f"per way and limit, alternating (A B, B A, ...); limits: "
        f"{', '.join(rate_name(r) for r in args.rates)}. One unmeasured warm-up round per way "
        f"first. Between rounds every Pod is deleted (grace 0) and gone, then {args.settle:g} s "
        "of rest.",
        "* `runtime` = `KubernetesRuntime.create_pod(manifest)`; `direct` = `await "
        "bucket.acquire(); await client.create(pod)` with the runtime's `TokenBucket` at the same "
        "rate, the same `AsyncClient` (one for both), and `Pod` objects made from the same "
        "manifests before the clock starts.",
        "* Times: create wall = first call to last answer; CPU = `time.thread_time()` of the "
        "thread issuing the creates (the watch that sees Pods Running runs in its own thread, "
        "with its own connection, so it is not counted; the process's total is shown too); call "
        "to Running = each Pod's create call (its wait in the token bucket included) to the "
        "watch event that shows it Running; all Running = first call to last Pod Running.",
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
        "The machine has only "
        f"{run.machine['CPUs (nproc)']} CPUs for the benchmark, the whole control plane and "
        "other engineers' test runs, which went on during this run: absolute numbers are noisy, "
        "the ratios from interleaved rounds are the result.",
        "",
        "## Results",
        "",
    ]
    for rate in args.rates:
        lines += [*summary_rows(run, rate), ""]
    lines += ["## What it says", "", *interpretation(run), ""]
    lines += ["## The runtime's own work", "", *own_work_rows(run), ""]
    lines += ["## Every round", "", *round_rows(run), ""]
    lines += [
        "CPU columns: thread = the creating thread during the creates; process = the whole bench "
        "process during the creates; cluster and others' = from the first create call until "
        "every Pod ran (others' = the machine's busy time minus this process and the cluster).",
        "",
    ]
    if run.profiles:
        lines += [
            "## Profile",
            "",
            f"One extra round per way, limit off, under cProfile (the creating thread only; "
            f"profiling slows it, these rounds are not in the results). CPU ratio of the measured "
            f"rounds without a limit: {cpu_ratio_off(run):.2f}.",
            "",
        ]
        for mode, result in run.profiles.items():
            lines += [
                f"### {mode}",
                "",
                "The runtime's functions and the client's main costs (cumulative time of a "
                "coroutine adds up its steps, not the time it waited):",
                "",
                "| function | calls | own s | cumulative s |",
                "|---|---:|---:|---:|",
                *(
                    f"| `{name}` | {calls} | {own:.3f} | {cumulative:.3f} |"
                    for name, calls, own, cumulative in result.hotspots
                ),
                "",
                "Top functions by own time:",
                "",
                "```",
                result.profile,
                "```",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def print_summary(run: Run) -> None:
    print()
    for rate in run.args.rates:
        print(f"limit {rate_name(rate)}: medians of {run.args.rounds} rounds")
        print(f"  {'measure':<40} {'runtime':>10} {'direct':>10} {'ratio':>7}")
        for name, unit, value in METRICS:
            runtime = median_of(run.of(rate, "runtime"), value)
            direct = median_of(run.of(rate, "direct"), value)
            ratio, _ = ratio_cells(run, rate, value)
            label = f"{name} ({unit})"
            print(f"  {label:<40} {fmt(runtime, unit):>10} {fmt(direct, unit):>10} {ratio:>7.2f}")
    if run.own is not None:
        own = run.own
        print(
            f"runtime's own work per Pod: _pod_from_manifest {own.pod_from_manifest_us:.0f} us "
            f"(Pod.from_dict alone {own.from_dict_us:.0f} us), runtime_pod "
            f"{own.runtime_pod_us:.0f} us"
        )
    for line in interpretation(run):
        print(line)


# -- entry point -----------------------------------------------------------------------------------


def parse_rate(text: str) -> float:
    rate = math.inf if text.lower() in ("inf", "off") else float(text)
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"a rate must be > 0 or inf, got {text}")
    return rate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/bench_k8s.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pods", type=int, default=100, help="Pods per round (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per way and limit (5)")
    parser.add_argument(
        "--rates",
        type=lambda text: [parse_rate(part) for part in text.split(",")],
        default=[50.0, math.inf],
        help="rate limits in requests/s, comma-separated, inf = off (default 50,inf)",
    )
    parser.add_argument("--settle", type=float, default=2.0, help="rest between rounds, s (2)")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the cProfile rounds"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the report file")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the report")
    args = parser.parse_args(argv)
    if args.pods < 2 or args.rounds < 1:
        parser.error("--pods must be >= 2 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo_importable()
    from tests.k8s_env import K8sTestEnv, bin_dir, pinned_versions

    started = time.monotonic()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    run = Run(
        args=args,
        started=datetime.now(UTC),
        machine=machine(),
        versions=pinned_versions(),
        server_version="?",
        load_before=f"load average {load} (1 / 5 / 15 min)",
        busy_before=busy_processes(),
        cpu_check_before=cpu_check_ms(),
    )
    binaries = bin_dir()
    base_dir = Path(tempfile.mkdtemp(prefix="slotpool-bench-k8s-"))
    print(f"starting the test cluster in {base_dir} ...", flush=True)
    env = K8sTestEnv.start(base_dir, binaries)
    try:
        env.wait_for_nodes_ready()
        run.cluster_start_s = time.monotonic() - started
        version = env.client.get("/version").json()
        run.server_version = f"{version.get('gitVersion', '?')} ({version.get('goVersion', '?')})"
        print(f"cluster ready in {run.cluster_start_s:.1f} s: {env.server}", flush=True)
        prepare_namespace(env)
        asyncio.run(measure(env, run))
    finally:
        env.stop()
    run.cpu_check_after = cpu_check_ms()
    run.seconds = time.monotonic() - started
    print_summary(run)
    if not args.no_write:
        args.output.write_text(report(run))
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
