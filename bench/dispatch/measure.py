"""The dispatch benchmark's measurements: the server with its local pool, the baselines, the
sequential latency phases, the throughput run and the CPU every process took meanwhile."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from tests.support import processes
from tests.support.ports import free_port
from tests.support.server import (
    LOCAL_PODS,
    ServerProcess,
    local_agents,
    server_process,
    server_settings,
)

from bench.harness.cpu import machine_busy_seconds, postgres_seconds, process_seconds
from bench.harness.databases import Database, database
from bench.harness.pyspy import PROFILES, SampledProfile, recording
from bench.harness.stats import Stats, elapsed_ms, measure, timed_get

TASKS = "/api/v1/tasks"
POOLS = "/api/v1/agent-pools"
PODS = 2
SLOTS_PER_POD = 8
POOL_BODY: dict[str, Any] = {
    "name": "bench",
    "pool_type": "local",
    "k8s_config": {"min_replicas": PODS, "slots_per_pod": SLOTS_PER_POD},
}
DATE_COMMAND = "date +%s.%N"
CLAIM_WAIT_SECONDS = 25  # the server's default claim_wait_seconds (slotpool.settings)
STALL_SECONDS = 5.0  # a step that starts later than this after its submission: a stall
TASK_TIMEOUT = CLAIM_WAIT_SECONDS + 35.0  # longest wait for one sequential task to end
PODS_READY_TIMEOUT = 60.0
IDLE_SECONDS = 3.0  # how long the idle server's own passes are measured
DRAIN_TIMEOUT = 180.0  # longest wait for the throughput tasks to end
FINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "lost", "expired"})
SERVER_USER = "server, user"
SERVER_SYSTEM = "server, system (kernel)"
AGENTS = f"agents ({PODS} processes)"
STEPS = "steps (`sh -c ...`, reaped by the agents)"
# pg_stat_database counters read around a phase: how much database work a task costs.
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
PG_STATS_FLUSH_SECONDS = 1.2  # backends publish their counters about once a second
LOG_MARKERS = ("[warning", "[error", "[critical", "traceback", "exception")


def parse_time(value: str) -> float:
    """An API timestamp as seconds since the epoch (naive ones are UTC)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# -- the server, its agents and the pool -------------------------------------------------------


@contextlib.contextmanager
def slotpool_server(database_url: str, workdir: Path) -> Iterator[ServerProcess]:
    """``slotpool server`` with a local runtime; every process it or its runtime started (the
    server, the agents, their steps) is killed on the way out, also on errors."""
    port = free_port()
    token = "bench-" + secrets.token_urlsafe(24)
    settings = server_settings(workdir, admin=token, port=port, database_url=database_url)
    with server_process(settings, workdir / "server.log", port=port, grace=0) as server:
        yield server


def create_pool(api: httpx.Client) -> tuple[str, float]:
    """Create the local pool and wait for its 2 ready pods; (its id, how long that took)."""
    start = time.monotonic()
    response = api.post(POOLS, json=POOL_BODY)
    if response.status_code != 201:
        raise RuntimeError(f"creating the pool: {response.status_code} {response.text}")
    pool_id: str = response.json()["pool_id"]
    while time.monotonic() < start + PODS_READY_TIMEOUT:
        pods = api.get(f"{POOLS}/{pool_id}/pods").json()["items"]
        if sum(1 for p in pods if p["state"] == "ready") == PODS:
            return pool_id, time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"no {PODS} ready pods in time")


def submit(api: httpx.Client, pool_id: str, command: str) -> str:
    response = api.post(TASKS, json={"pool_id": pool_id, "command": command})
    if response.status_code != 201:
        raise RuntimeError(f"submit: {response.status_code} {response.text[:500]}")
    task_id: str = response.json()["id"]
    return task_id


def get_task(api: httpx.Client, task_id: str) -> dict[str, Any]:
    response = api.get(f"{TASKS}/{task_id}")
    if response.status_code != 200:
        raise RuntimeError(f"get {task_id}: {response.status_code} {response.text[:500]}")
    task: dict[str, Any] = response.json()
    return task


def count(api: httpx.Client, pool_id: str, status: str) -> int:
    response = api.get(TASKS, params={"pool_id": pool_id, "status": status, "limit": 1})
    response.raise_for_status()
    total: int = response.json()["total"]
    return total


def all_tasks(api: httpx.Client, pool_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    while True:
        params: dict[str, str | int] = {"pool_id": pool_id, "limit": 1000, "offset": len(found)}
        page = api.get(TASKS, params=params).raise_for_status().json()
        found.update((item["id"], item) for item in page["items"])
        if not page["items"] or len(found) >= page["total"]:
            return found


def log_issues(server: ServerProcess) -> list[str]:
    """Warning and error lines of the server's and the agents' logs (the agents log at info)."""
    found = []
    pods = server.settings.data_dir / LOCAL_PODS
    for path in [server.log, *sorted(pods.glob("*.log"))]:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if any(marker in line.lower() for marker in LOG_MARKERS):
                    found.append(f"{path.name}: {line.strip()[:300]}")
    return found


# -- baselines ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baselines:
    exec_date: Stats  # spawn to `date` reading the clock
    run_date: Stats  # the whole subprocess.run
    exec_shell: Stats  # the same through /bin/sh -c, as an agent runs a step's `run`
    run_shell: Stats


def spawn_baselines(warmups: int, n: int) -> Baselines:
    def once(argv: list[str]) -> tuple[float, float]:
        start_ns = time.perf_counter_ns()
        t0 = time.time()
        done = subprocess.run(
            argv, capture_output=True, text=True, check=True, start_new_session=True
        )
        took = elapsed_ms(start_ns)
        return (float(done.stdout.strip()) - t0) * 1000, took

    found: dict[str, list[float]] = {}
    for key, argv in (("date", ["date", "+%s.%N"]), ("shell", ["/bin/sh", "-c", DATE_COMMAND])):
        for _ in range(warmups):
            once(argv)
        pairs = [once(argv) for _ in range(n)]
        found[f"exec_{key}"] = [p[0] for p in pairs]
        found[f"run_{key}"] = [p[1] for p in pairs]
    return Baselines(
        exec_date=Stats.of("spawn date: to its clock read", found["exec_date"]),
        run_date=Stats.of("spawn date: whole run", found["run_date"]),
        exec_shell=Stats.of("sh -c date: to its clock read", found["exec_shell"]),
        run_shell=Stats.of("sh -c date: whole run", found["run_shell"]),
    )


def healthz(api: httpx.Client, warmups: int, n: int) -> Stats:
    return measure("GET /healthz", lambda _: timed_get(api, "/healthz"), warmups=warmups, n=n)


# -- what the processes used -------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What the processes taking part used over a stretch of wall time."""

    seconds: float
    cpu: dict[str, float]
    db: dict[str, float]
    machine_busy: float  # CPU seconds of the whole machine, ours and everybody else's

    def others(self) -> float:
        """CPU seconds of processes on this machine that are not part of the benchmark."""
        return max(0.0, self.machine_busy - sum(self.cpu.values()))

    def server_cpu(self) -> float:
        return self.cpu.get(SERVER_USER, 0.0) + self.cpu.get(SERVER_SYSTEM, 0.0)

    def transactions(self) -> float | None:
        if not self.db:
            return None
        return self.db["xact_commit"] + self.db["xact_rollback"]


Reading = tuple[float, dict[str, float], dict[str, float], float]


class Meter:
    """CPU seconds of every process taking part (the client, the server, its agents and their
    steps, PostgreSQL) and PostgreSQL's transaction counters, read around a phase."""

    def __init__(self, server: ServerProcess, db: Database) -> None:
        self._server = server
        self._db = db

    def read(self) -> Reading:
        now = time.monotonic()
        busy = machine_busy_seconds()
        user, system, _ = processes.cpu_seconds(self._server.pid)
        cpu = {"benchmark client": time.process_time(), SERVER_USER: user, SERVER_SYSTEM: system}
        agents = local_agents(self._server.settings)
        cpu[AGENTS] = sum(process_seconds(pid) for pid in agents)
        cpu[STEPS] = sum(processes.cpu_seconds(pid)[2] for pid in agents)
        db: dict[str, float] = {}
        if self._db.backend == "postgresql":
            cpu["PostgreSQL"] = postgres_seconds(self._db.postmaster)
            time.sleep(PG_STATS_FLUSH_SECONDS)
            db = self._counters()
        return now, cpu, db, busy

    def _counters(self) -> dict[str, float]:
        columns = ", ".join(PG_COUNTERS)
        with psycopg.connect(self._db.url, autocommit=True) as conn:
            row = conn.execute(
                f"SELECT {columns} FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return {name: float(value) for name, value in zip(PG_COUNTERS, row or (), strict=True)}

    def since(self, start: Reading) -> Usage:
        end = self.read()
        return Usage(
            seconds=end[0] - start[0],
            cpu={k: v - start[1].get(k, 0.0) for k, v in end[1].items()},
            db={k: v - start[2].get(k, 0.0) for k, v in end[2].items()},
            machine_busy=end[3] - start[3],
        )


# -- sequential dispatch latency ---------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    index: int
    warmup: bool
    task_id: str
    status: str
    where: str  # pod/slot
    post_ms: float  # the POST's round trip
    latency_ms: float | None  # `date`'s clock read - time.time() before the POST
    server_ms: float | None  # results[0].started_at - created_at (server clock)
    agent_ms: float | None  # `date`'s clock read - results[0].started_at
    reason: str = ""  # the task's reason, for one that did not succeed

    @property
    def stalled(self) -> bool:
        return self.latency_ms is not None and self.latency_ms > STALL_SECONDS * 1000


COLUMNS: dict[str, Callable[[Sample], float | None]] = {
    "submit to step start (client)": lambda s: s.latency_ms,
    "submit to delivery (server)": lambda s: s.server_ms,
    "delivery to step start (agent)": lambda s: s.agent_ms,
    "POST /api/v1/tasks round trip": lambda s: s.post_ms,
}


@dataclass
class LatencyPhase:
    name: str
    warmups: int
    n: int
    samples: list[Sample] = field(default_factory=list)
    stopped: str = ""  # why the phase ended before its n samples, if it did
    seconds: float = 0.0
    setup: str = ""
    usage: Usage | None = None  # over the measured tasks

    def measured(self) -> list[Sample]:
        return [s for s in self.samples if not s.warmup]

    def stats(self) -> dict[str, Stats]:
        found = {}
        for name, column in COLUMNS.items():
            values = [v for s in self.measured() if (v := column(s)) is not None]
            if (stats := Stats.maybe(name, values)) is not None:
                found[name] = stats
        return found

    @property
    def stalls(self) -> int:
        return sum(1 for s in self.samples if s.stalled)

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.status != "succeeded"]


def one_task(api: httpx.Client, pool_id: str, index: int, warmup: bool) -> Sample:
    """Submit ``date +%s.%N``, follow its log until it has ended, and time it."""
    post_start = time.perf_counter_ns()
    t_submit = time.time()
    task_id = submit(api, pool_id, DATE_COMMAND)
    post_ms = elapsed_ms(post_start)
    # The log stream ends once the task has ended: no polling load on the server meanwhile.
    response = api.get(f"{TASKS}/{task_id}/logs", params={"follow": "true"}, timeout=TASK_TIMEOUT)
    task = get_task(api, task_id)
    if task["status"] not in FINAL:
        raise RuntimeError(f"{task_id} is still {task['status']} after its log ended")
    started = None
    with contextlib.suppress(ValueError, IndexError):
        started = float(response.text.strip().splitlines()[-1])
    delivered = (task.get("results") or [{}])[0].get("started_at")
    delivered_at = parse_time(delivered) if delivered else None
    created_at = parse_time(task["created_at"])
    return Sample(
        index=index,
        warmup=warmup,
        task_id=task_id,
        status=task["status"],
        where=f"{task['pod_name']}/{task['slot_index']}",
        post_ms=post_ms,
        latency_ms=None if started is None else (started - t_submit) * 1000,
        server_ms=None if delivered_at is None else (delivered_at - created_at) * 1000,
        agent_ms=None
        if started is None or delivered_at is None
        else (started - delivered_at) * 1000,
        reason="" if task["status"] == "succeeded" else str(task.get("reason") or ""),
    )


def sequential(
    phase: LatencyPhase, api: httpx.Client, pool_id: str, *, stall_limit: int, meter: Meter
) -> LatencyPhase:
    start = time.monotonic()
    total = phase.warmups + phase.n
    reading = meter.read() if phase.warmups == 0 else None
    for i in range(total):
        if i == phase.warmups and i > 0:
            reading = meter.read()
        sample = one_task(api, pool_id, i, warmup=i < phase.warmups)
        phase.samples.append(sample)
        if sample.status != "succeeded":
            print(f"  {phase.name}: {sample.task_id} ended {sample.status}", file=sys.stderr)
        if stall_limit and phase.stalls >= stall_limit:
            phase.stopped = (
                f"stopped after {len(phase.samples)} of {total} tasks: {phase.stalls} waited "
                f"more than {STALL_SECONDS:g} s for their step to start"
            )
            break
    phase.seconds = time.monotonic() - start
    if reading is not None and phase.measured():
        phase.usage = meter.since(reading)
    return phase


@contextlib.contextmanager
def held_slots(api: httpx.Client, pool_id: str, count_: int) -> Iterator[tuple[list[str], str]]:
    """``count_`` tasks that each hold a slot until the benchmark removes a file (or 5 minutes
    pass); yields their ids and where they run, once every one of them has started."""
    # Steps run as the agent's user (``nobody`` under a root server), who cannot enter
    # the server's work directory: the files the steps and the benchmark share sit where both can.
    hold_dir = Path(tempfile.mkdtemp(prefix="slotpool-bench-hold-"))
    hold_dir.chmod(0o1777)
    keep = hold_dir / "keep"
    keep.touch()
    marker = shlex.quote(str(hold_dir)) + "/started-$SLOTPOOL_TASK_ID"
    command = (
        f"touch {marker}; n=0; "
        f"while [ -e {shlex.quote(str(keep))} ] && [ $n -lt 300 ]; do sleep 1; n=$((n+1)); done"
    )
    ids: list[str] = []
    try:
        # Back to back: one of them may land in a slot its agent does not claim right now (see
        # the report); the next assignment to that agent brings it along.
        ids = [submit(api, pool_id, command) for _ in range(count_)]
        deadline = time.monotonic() + TASK_TIMEOUT
        while len(list(hold_dir.glob("started-*"))) < count_:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {count_} slot-holding tasks did not all start in time")
            time.sleep(0.05)
        where = Counter(str(get_task(api, task_id)["pod_name"]) for task_id in ids)
        yield ids, ", ".join(f"{n} on {pod}" for pod, n in sorted(where.items()))
    finally:
        keep.unlink(missing_ok=True)
        deadline = time.monotonic() + 30
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            pending = [t for t in pending if get_task(api, t)["status"] not in FINAL]
            time.sleep(0.1)
        if pending:
            print(f"warning: slot-holding tasks still running: {pending}", file=sys.stderr)
        shutil.rmtree(hold_dir, ignore_errors=True)


# -- throughput --------------------------------------------------------------------------------


@dataclass
class Throughput:
    tasks: int
    concurrency: int
    submitted: int = 0
    submit_errors: list[str] = field(default_factory=list)
    first_submit: float = 0.0
    last_accepted: float = 0.0
    last_finish: float = 0.0
    drained: bool = True
    statuses: Counter[str] = field(default_factory=Counter)
    not_succeeded: list[str] = field(default_factory=list)
    post: Stats | None = None
    dispatch_wait: Stats | None = None  # started_at - created_at (server)
    run_and_report: Stats | None = None  # finished_at - started_at (server)
    finish_after: dict[str, float] = field(default_factory=dict)  # fraction -> s after first submit
    handoff: Stats | None = None  # a slot freed -> its next, already waiting task delivered
    slow_handoffs: list[str] = field(default_factory=list)
    usage: Usage | None = None
    profile: SampledProfile | None = None  # the server sampled by py-spy (``--profile``)

    @property
    def submit_rate(self) -> float:
        span = self.last_accepted - self.first_submit
        return self.submitted / span if span > 0 else 0.0

    @property
    def completion_rate(self) -> float:
        span = self.last_finish - self.first_submit
        return self.tasks / span if span > 0 and self.drained else 0.0


Submitted = tuple[float, float, float, str]  # (sent, accepted, ms, task id)


def submit_all(server: ServerProcess, pool_id: str, result: Throughput) -> list[Submitted]:
    """The tasks, from ``result.concurrency`` threads with a warm connection each."""
    lock = threading.Lock()
    numbers = iter(range(result.tasks))
    times: list[Submitted] = []

    def submitter(client: httpx.Client) -> None:
        while True:
            with lock:
                if next(numbers, None) is None:
                    return
            start_ns, sent = time.perf_counter_ns(), time.time()
            try:
                response = client.post(TASKS, json={"pool_id": pool_id, "command": "true"})
            except httpx.HTTPError as exc:
                with lock:
                    result.submit_errors.append(f"{type(exc).__name__}: {exc}")
                continue
            took, accepted = elapsed_ms(start_ns), time.time()
            with lock:
                if response.status_code == 201:
                    times.append((sent, accepted, took, response.json()["id"]))
                else:
                    result.submit_errors.append(f"{response.status_code} {response.text[:200]}")

    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(server.client()) for _ in range(result.concurrency)]
        for client in clients:  # connect first: the burst measures submissions, not handshakes
            client.get("/healthz").raise_for_status()
        threads = [threading.Thread(target=submitter, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return times


def drained(api: httpx.Client, pool_id: str) -> bool:
    """Wait until no task of the pool is queued or running; False after ``DRAIN_TIMEOUT``."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while count(api, pool_id, "queued") + count(api, pool_id, "running"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def throughput(
    server: ServerProcess,
    pool_id: str,
    tasks: int,
    concurrency: int,
    meter: Meter,
    profile: Path | None = None,
) -> Throughput:
    """The throughput run; with ``profile``, the server process sampled by py-spy meanwhile
    (from the first submission until every task has ended) into that file."""
    result = Throughput(tasks=tasks, concurrency=concurrency)
    with server.client() as api:
        with contextlib.ExitStack() as sampling:
            if profile is not None:
                result.profile = sampling.enter_context(recording(server.pid, profile))
            reading = meter.read()
            times = submit_all(server, pool_id, result)
            result.submitted = len(times)
            if not times:
                raise RuntimeError(f"no task was accepted: {result.submit_errors[:3]}")
            result.first_submit = min(t[0] for t in times)
            result.last_accepted = max(t[1] for t in times)
            result.post = Stats.of("POST /api/v1/tasks under load", [t[2] for t in times])
            result.drained = drained(api, pool_id)
            result.usage = meter.since(reading)
        found = all_tasks(api, pool_id)
    ours = [found[t[3]] for t in times if t[3] in found]
    outcomes(result, ours)
    return result


def outcomes(result: Throughput, ours: list[dict[str, Any]]) -> None:
    """How the tasks ended, when, and how fast a freed slot got its next waiting task."""
    result.statuses = Counter(str(t["status"]) for t in ours)
    result.not_succeeded = [
        f"{t['id']}: {t['status']} {t['reason']}".strip()
        for t in ours
        if t["status"] != "succeeded"
    ]
    finished = sorted(parse_time(t["finished_at"]) for t in ours if t.get("finished_at"))
    if finished:
        result.last_finish = finished[-1]
        for fraction in (0.5, 0.9, 0.99, 1.0):
            at = finished[max(0, round(fraction * len(finished)) - 1)]
            result.finish_after[f"{fraction:.0%}"] = at - result.first_submit
    waits, runs = [], []
    # (created, delivered, finished, id) per slot, to see how fast a freed slot is used again
    by_slot: dict[str, list[tuple[float, float, float, str]]] = {}
    for t in ours:
        results = t.get("results") or []
        if not results or not results[0].get("started_at") or not results[0].get("finished_at"):
            continue
        created = parse_time(t["created_at"])
        delivered = parse_time(results[0]["started_at"])
        ended = parse_time(results[0]["finished_at"])
        waits.append((delivered - created) * 1000)
        runs.append((ended - delivered) * 1000)
        slot = f"{t['pod_name']}/{t['slot_index']}"
        by_slot.setdefault(slot, []).append((created, delivered, ended, t["id"]))
    result.handoff = Stats.maybe(
        "slot freed to next waiting task delivered (server)", handoffs(result, by_slot)
    )
    result.dispatch_wait = Stats.maybe("submit to delivery (server; queueing included)", waits)
    result.run_and_report = Stats.maybe("delivery to result (server)", runs)


def handoffs(
    result: Throughput, by_slot: dict[str, list[tuple[float, float, float, str]]]
) -> list[float]:
    found = []
    for slot, spans in by_slot.items():
        spans.sort(key=lambda span: span[1])
        for before, after in itertools.pairwise(spans):
            if after[0] >= before[2]:
                continue  # the next task came later than the slot's freeing: no queue to serve
            gap = after[1] - before[2]
            found.append(gap * 1000)
            if gap > STALL_SECONDS:
                result.slow_handoffs.append(
                    f"{after[3]}: delivered {gap:.1f} s after slot `{slot}` came free, "
                    "though it was waiting"
                )
    return found


# -- one backend -------------------------------------------------------------------------------


@dataclass
class BackendResult:
    backend: str
    database: dict[str, str] = field(default_factory=dict)
    pods_ready_seconds: float = 0.0
    healthz: Stats | None = None
    idle: Usage | None = None  # the server and its agents doing nothing for IDLE_SECONDS
    plain: LatencyPhase | None = None
    held: LatencyPhase | None = None
    throughput: Throughput | None = None
    log_issues: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_backend(backend: str, args: argparse.Namespace) -> BackendResult:
    result = BackendResult(backend)
    started = time.monotonic()
    with (
        database(backend) as db,
        tempfile.TemporaryDirectory(prefix="slotpool-dispatch-") as tmp,
        slotpool_server(db.url, Path(tmp)) as server,
        server.client() as api,
    ):
        result.database = db.settings
        try:
            phases(result, server, api, db, Path(tmp), args)
        finally:
            result.log_issues = log_issues(server)
    result.seconds = time.monotonic() - started
    return result


def phases(
    result: BackendResult,
    server: ServerProcess,
    api: httpx.Client,
    db: Database,
    workdir: Path,
    args: argparse.Namespace,
) -> None:
    backend = result.backend
    print(f"  {backend}: pool of {PODS} agents x {SLOTS_PER_POD} slots", file=sys.stderr)
    pool_id, result.pods_ready_seconds = create_pool(api)
    result.healthz = healthz(api, 20, 200)
    meter = Meter(server, db)
    reading = meter.read()
    time.sleep(IDLE_SECONDS)
    result.idle = meter.since(reading)
    print(f"  {backend}: plain sequential latency", file=sys.stderr)
    plain = LatencyPhase("plain", args.warmups, args.n)
    result.plain = sequential(plain, api, pool_id, stall_limit=args.stall_limit, meter=meter)
    holders = PODS * SLOTS_PER_POD - 1
    print(f"  {backend}: latency into the one idle slot", file=sys.stderr)
    with held_slots(api, pool_id, holders) as (_, where):
        held = LatencyPhase("one idle slot", args.warmups, args.n)
        held.setup = f"{holders} slots held by waiting tasks ({where})"
        result.held = sequential(held, api, pool_id, stall_limit=args.stall_limit, meter=meter)
    print(f"  {backend}: throughput of {args.tasks} tasks", file=sys.stderr)
    profile = PROFILES / f"dispatch-{backend}.speedscope.json" if args.profile else None
    result.throughput = throughput(
        server, pool_id, args.tasks, args.concurrency, meter, profile=profile
    )
