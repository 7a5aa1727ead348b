"""Task dispatch of one slotpool server, on SQLite and PostgreSQL, with real agent processes.

Per backend, ``slotpool server`` runs in its own process with a local pool of 2 agents x 8 slots
(the server's local runtime starts the agents as processes on this host). Then:

* ``plain``, the dispatch latency as an operator sees it: sequentially, ``date +%s.%N`` as a
  task with nothing else running, every agent idle in its long-poll claim. Latency = the time
  ``date`` printed (the step's start, same machine clock) minus ``time.time()`` just before the
  POST. Also the server's part (``results[0].started_at - created_at``: submission to delivery of
  the step in a claim answer) and the agent's (delivery to ``date`` reading the clock).
* ``one idle slot``: the same, with 15 of the 16 slots held by waiting tasks, so every task
  lands in the one idle slot, whose agent claims exactly that slot each time.
* ``throughput``: 600 tasks of ``true`` submitted as fast as a few client threads can, then
  completions per second = tasks / (last ``finished_at`` - first submission), the submission rate
  alone (the ceiling), the CPU time each process took meanwhile and any task that did not succeed.

Baselines from the same run: ``date +%s.%N`` spawned by Python directly and through
``/bin/sh -c`` (what an agent runs), and ``GET /healthz`` on the same server and connection.

A sequential phase stops early when a task waits more than ``STALL_SECONDS`` for its step to
start (a stall); its samples, stalls included, are reported one by one. Results are printed and
written to ``bench/DISPATCH.md`` with the machine's details. ``.venv/bin/python
bench/bench_dispatch.py --help`` lists the options; ``scripts/bench dispatch`` runs it after
making sure PostgreSQL is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import resource
import secrets
import shlex
import signal
import sqlite3
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

from bench_api import (
    PG_SETTINGS,
    ROOT,
    Stats,
    cpu_check_ms,
    elapsed_ms,
    free_port,
    log_tail,
    machine,
    start_postgres,
    wait_ready,
)

DEFAULT_OUTPUT = ROOT / "bench" / "DISPATCH.md"
BACKENDS = ("sqlite", "postgresql")
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
REQUEST_TIMEOUT = 60.0
FINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "lost", "expired"})
GOALS = {"p50_ms": 50.0, "p99_ms": 200.0, "per_second": 300.0}


def code_fingerprint() -> str:
    """Which slotpool code ran: a digest of ``src/slotpool``'s Python files, and when the newest
    of them changed (the code may change between runs, or even during one)."""
    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted((ROOT / "src" / "slotpool").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    changed = datetime.fromtimestamp(newest, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"`{digest.hexdigest()[:12]}` (SHA-256 of `src/slotpool/**/*.py`; newest change {changed})"
    )


# -- small helpers -----------------------------------------------------------------------------


def parse_time(value: str) -> float:
    """An API timestamp as seconds since the epoch (naive ones are UTC)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def stats_or_none(name: str, values: list[float]) -> Stats | None:
    return Stats.of(name, values) if len(values) >= 2 else None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: it is gone for every purpose here)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """CPU seconds of ``pid``: (user, system, its reaped children's user + system)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    # After the command name: state is field 3 of stat(5), utime..cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return utime / tick, stime / tick, (cutime + cstime) / tick


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def server_processes(postmaster: int) -> list[int]:
    """A PostgreSQL server's processes: its postmaster and the postmaster's children."""
    pids = [postmaster]
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and parent_pid(int(entry.name)) == postmaster:
            pids.append(int(entry.name))
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have been busy since boot (/proc/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        busy = sum(values[:8]) - values[3] - values[4]
        return busy / os.sysconf("SC_CLK_TCK")
    return 0.0


def busy_processes(seconds: float = 2.0, top: int = 5) -> list[str]:
    """The processes of other users of this machine that used the most CPU over ``seconds``
    (the benchmark shares the CPUs with whatever else runs: this says how much that was)."""

    def sample() -> dict[int, tuple[str, float]]:
        found = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    name = Path(entry.path, "comm").read_text().strip()
                    user, system, _ = cpu_seconds(int(entry.name))
                    found[int(entry.name)] = (name, user + system)
        return found

    before = sample()
    time.sleep(seconds)
    after = sample()
    used: dict[str, float] = {}
    for pid, (name, total) in after.items():
        if pid != os.getpid() and pid in before:
            used[name] = used.get(name, 0.0) + total - before[pid][1]
    busiest = sorted(used.items(), key=lambda item: -item[1])[:top]
    return [f"{name} {cpu / seconds * 100:.0f}%" for name, cpu in busiest if cpu > 0]


# -- the server, its agents and the pool -------------------------------------------------------


@dataclass
class Slotpool:
    """A running ``slotpool server`` with its data directory; ``pool_id`` once the pool is up."""

    url: str
    token: str
    workdir: Path
    process: subprocess.Popen[bytes]
    pool_id: str = ""

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def pods_dir(self) -> Path:
        return self.data_dir / "local-runtime" / "pods"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=REQUEST_TIMEOUT,
        )

    def agent_pids(self) -> dict[str, int]:
        pids = {}
        for record in self.pods_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                data = json.loads(record.read_text())
                pids[str(data["name"])] = int(data["pid"])
        return pids


@contextlib.contextmanager
def slotpool_server(database_url: str, workdir: Path) -> Iterator[Slotpool]:
    """``python -m slotpool.cli server`` with a local runtime; every process it or its runtime
    started (the server, the agents) is killed on the way out, also on errors."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = "bench-" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
    env.update(
        SLOTPOOL_DATABASE_URL=database_url,
        SLOTPOOL_DATA_DIR=str(workdir / "data"),
        SLOTPOOL_ADMIN_TOKEN=token,
        SLOTPOOL_PUBLIC_URL=url,
        SLOTPOOL_LOG_LEVEL="warning",
    )
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", "slotpool.cli", "server", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Slotpool(url, token, workdir, process)
    try:
        wait_ready(url, process, log_path)
        yield server
    finally:
        # The server first, so that its runtime does not start agents again; then the agents
        # (each in a session of its own, recorded under pods/). Their steps are short or end by
        # themselves (the held slots' tasks watch a file of the benchmark's temporary directory).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        end_agents(server)


def end_agents(server: Slotpool) -> None:
    pids = server.agent_pids()
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [name for name, pid in pids.items() if process_alive(pid)]
    if left:
        print(f"warning: agent processes still alive: {left}", file=sys.stderr)


def create_pool(server: Slotpool, api: httpx.Client) -> float:
    """Create the local pool and wait for its 2 ready pods; returns how long that took."""
    start = time.monotonic()
    response = api.post(POOLS, json=POOL_BODY)
    if response.status_code != 201:
        raise RuntimeError(f"creating the pool: {response.status_code} {response.text}")
    server.pool_id = response.json()["pool_id"]
    deadline = start + PODS_READY_TIMEOUT
    while time.monotonic() < deadline:
        pods = api.get(f"{POOLS}/{server.pool_id}/pods").json()["items"]
        if sum(1 for p in pods if p["state"] == "ready") == PODS:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"no {PODS} ready pods in time:\n{log_tail(server.log_path)}")


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
    offset = 0
    while True:
        response = api.get(TASKS, params={"pool_id": pool_id, "limit": 1000, "offset": offset})
        response.raise_for_status()
        page = response.json()
        for item in page["items"]:
            found[item["id"]] = item
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
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
    def once() -> float:
        start = time.perf_counter_ns()
        response = api.get("/healthz")
        took = elapsed_ms(start)
        if response.status_code != 200:
            raise RuntimeError(f"/healthz: {response.status_code}")
        return took

    for _ in range(warmups):
        once()
    return Stats.of("GET /healthz", [once() for _ in range(n)])


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
        rows = self.measured()
        columns: dict[str, Callable[[Sample], float | None]] = {
            "submit to step start (client)": lambda s: s.latency_ms,
            "submit to delivery (server)": lambda s: s.server_ms,
            "delivery to step start (agent)": lambda s: s.agent_ms,
            "POST /api/v1/tasks round trip": lambda s: s.post_ms,
        }
        found = {}
        for name, column in columns.items():
            values = [v for s in rows if (v := column(s)) is not None]
            if (stats := stats_or_none(name, values)) is not None:
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
    try:
        started = float(response.text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        started = None
    results = task.get("results") or [{}]
    delivered = results[0].get("started_at")
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
def held_slots(
    api: httpx.Client, pool_id: str, workdir: Path, count_: int
) -> Iterator[tuple[list[str], str]]:
    """``count_`` tasks that each hold a slot until the benchmark removes a file (or 5 minutes
    pass); yields their ids and where they run, once every one of them has started."""
    hold_dir = workdir / "hold"
    hold_dir.mkdir()
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
        tasks = [get_task(api, task_id) for task_id in ids]
        where = Counter(str(t["pod_name"]) for t in tasks)
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

    @property
    def submit_rate(self) -> float:
        span = self.last_accepted - self.first_submit
        return self.submitted / span if span > 0 else 0.0

    @property
    def completion_rate(self) -> float:
        span = self.last_finish - self.first_submit
        return self.tasks / span if span > 0 and self.drained else 0.0


SERVER_USER = "server, user"
SERVER_SYSTEM = "server, system (kernel)"


def cpu_snapshot(server: Slotpool, postmaster: int | None) -> dict[str, float]:
    """CPU seconds so far of every process taking part (PostgreSQL: all its processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    user, system, _ = cpu_seconds(server.process.pid)
    snapshot = {
        "benchmark client": usage.ru_utime + usage.ru_stime,
        SERVER_USER: user,
        SERVER_SYSTEM: system,
    }
    agents = steps = 0.0
    for pid in server.agent_pids().values():
        user, system, children = cpu_seconds(pid)
        agents += user + system
        steps += children
    snapshot[f"agents ({PODS} processes)"] = agents
    snapshot["steps (`sh -c ...`, reaped by the agents)"] = steps
    if postmaster is not None:
        snapshot["PostgreSQL"] = sum(sum(cpu_seconds(pid)) for pid in server_processes(postmaster))
    return snapshot


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


# pg_stat_database counters read around a phase: how much database work a task costs.
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
PG_STATS_FLUSH_SECONDS = 1.2  # backends publish their counters about once a second


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
    def __init__(self, server: Slotpool, postgres_url: str | None) -> None:
        self._server = server
        self._postgres_url = postgres_url
        self._postmaster: int | None = None
        if postgres_url is not None:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
            # None when the server runs elsewhere (SLOTPOOL_TEST_PG_URL): its CPU is not seen.
            self._postmaster = parent_pid(int(row[0])) if row else None

    def read(self) -> Reading:
        now = time.monotonic()
        busy = machine_busy_seconds()
        cpu = cpu_snapshot(self._server, self._postmaster)
        db: dict[str, float] = {}
        if self._postgres_url is not None:
            time.sleep(PG_STATS_FLUSH_SECONDS)
            columns = ", ".join(PG_COUNTERS)
            with psycopg.connect(self._postgres_url, autocommit=True) as conn:
                row = conn.execute(
                    f"SELECT {columns} FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
            db = {name: float(value) for name, value in zip(PG_COUNTERS, row or (), strict=True)}
        return now, cpu, db, busy

    def since(self, start: Reading) -> Usage:
        end = self.read()
        return Usage(
            seconds=end[0] - start[0],
            cpu=cpu_delta(start[1], end[1]),
            db={k: v - start[2].get(k, 0.0) for k, v in end[2].items()},
            machine_busy=end[3] - start[3],
        )


def throughput(server: Slotpool, tasks: int, concurrency: int, meter: Meter) -> Throughput:
    result = Throughput(tasks=tasks, concurrency=concurrency)
    lock = threading.Lock()
    numbers = iter(range(tasks))
    times: list[tuple[float, float, float, str]] = []  # (sent, accepted, ms, task id)

    def submitter(client: httpx.Client) -> None:
        while True:
            with lock:
                if next(numbers, None) is None:
                    return
            start_ns = time.perf_counter_ns()
            sent = time.time()
            try:
                response = client.post(TASKS, json={"pool_id": server.pool_id, "command": "true"})
            except httpx.HTTPError as exc:
                with lock:
                    result.submit_errors.append(f"{type(exc).__name__}: {exc}")
                continue
            took = elapsed_ms(start_ns)
            accepted = time.time()
            with lock:
                if response.status_code == 201:
                    times.append((sent, accepted, took, response.json()["id"]))
                else:
                    result.submit_errors.append(f"{response.status_code} {response.text[:200]}")

    with contextlib.ExitStack() as stack, server.client() as api:
        clients = [stack.enter_context(server.client()) for _ in range(concurrency)]
        for client in clients:  # connect first: the burst measures submissions, not handshakes
            client.get("/healthz").raise_for_status()
        reading = meter.read()
        threads = [threading.Thread(target=submitter, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.submitted = len(times)
        if not times:
            raise RuntimeError(f"no task was accepted: {result.submit_errors[:3]}")
        result.first_submit = min(t[0] for t in times)
        result.last_accepted = max(t[1] for t in times)
        result.post = Stats.of("POST /api/v1/tasks under load", [t[2] for t in times])
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            busy = count(api, server.pool_id, "queued") + count(api, server.pool_id, "running")
            if busy == 0:
                break
            if time.monotonic() > deadline:
                result.drained = False
                break
            time.sleep(0.2)
        result.usage = meter.since(reading)
        found = all_tasks(api, server.pool_id)

    ours = [found[t[3]] for t in times if t[3] in found]
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
    handoffs = []
    for slot, spans in by_slot.items():
        spans.sort(key=lambda span: span[1])
        for before, after in itertools.pairwise(spans):
            if after[0] >= before[2]:
                continue  # the next task came later than the slot's freeing: no queue to serve
            gap = after[1] - before[2]
            handoffs.append(gap * 1000)
            if gap > STALL_SECONDS:
                result.slow_handoffs.append(
                    f"{after[3]}: delivered {gap:.1f} s after slot `{slot}` came free, "
                    "though it was waiting"
                )
    result.dispatch_wait = stats_or_none("submit to delivery (server; queueing included)", waits)
    result.run_and_report = stats_or_none("delivery to result (server)", runs)
    result.handoff = stats_or_none("slot freed to next waiting task delivered (server)", handoffs)
    return result


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


LOG_MARKERS = ("[warning", "[error", "[critical", "traceback", "exception")


def log_issues(server: Slotpool) -> list[str]:
    """Warning and error lines of the server's and the agents' logs (the agents log at info)."""
    found = []
    for path in [server.log_path, *sorted(server.pods_dir.glob("*.log"))]:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if any(marker in line.lower() for marker in LOG_MARKERS):
                    found.append(f"{path.name}: {line.strip()[:300]}")
    return found


def run_backend(backend: str, database_url: str, args: argparse.Namespace) -> BackendResult:
    result = BackendResult(backend)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="slotpool-dispatch-") as tmp,
        slotpool_server(database_url, Path(tmp)) as server,
        server.client() as api,
    ):
        try:
            print(f"  {backend}: pool of {PODS} agents x {SLOTS_PER_POD} slots", file=sys.stderr)
            result.pods_ready_seconds = create_pool(server, api)
            result.healthz = healthz(api, 20, 200)
            meter = Meter(server, database_url if backend == "postgresql" else None)
            reading = meter.read()
            time.sleep(IDLE_SECONDS)
            result.idle = meter.since(reading)
            print(f"  {backend}: plain sequential latency", file=sys.stderr)
            result.plain = sequential(
                LatencyPhase("plain", args.warmups, args.n),
                api,
                server.pool_id,
                stall_limit=args.stall_limit,
                meter=meter,
            )
            holders = PODS * SLOTS_PER_POD - 1
            print(f"  {backend}: latency into the one idle slot", file=sys.stderr)
            with held_slots(api, server.pool_id, Path(tmp), holders) as (_, where):
                held = LatencyPhase("one idle slot", args.warmups, args.n)
                held.setup = f"{holders} slots held by waiting tasks ({where})"
                result.held = sequential(
                    held, api, server.pool_id, stall_limit=args.stall_limit, meter=meter
                )
            print(f"  {backend}: throughput of {args.tasks} tasks", file=sys.stderr)
            result.throughput = throughput(server, args.tasks, args.concurrency, meter)
        finally:
            result.log_issues = log_issues(server)
    result.seconds = time.monotonic() - started
    return result


def run_sqlite(args: argparse.Namespace) -> BackendResult:
    with tempfile.TemporaryDirectory(prefix="slotpool-dispatch-db-") as tmp:
        result = run_backend("sqlite", f"sqlite:///{tmp}/slotpool.db", args)
    result.database = {"version": sqlite3.sqlite_version}
    return result


def run_postgres(args: argparse.Namespace) -> BackendResult:
    pg = start_postgres()
    try:
        with pg.temporary_database() as url:
            database = {}
            with psycopg.connect(url) as conn:
                for setting in PG_SETTINGS:
                    row = conn.execute(f"SHOW {setting}").fetchone()
                    database[setting] = str(row[0]) if row else "?"
            result = run_backend("postgresql", url, args)
    finally:
        pg.stop()
    result.database = database
    return result


# -- the report --------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def stats_rows(stats: list[Stats]) -> list[str]:
    lines = [
        "| measure | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        lines.append(
            f"| {s.name} | {s.n} | {s.p50:,.2f} | {s.p90:,.2f} | {s.p99:,.2f} "
            f"| {s.maximum:,.2f} | {s.mean:,.2f} |"
        )
    return lines


def sample_rows(samples: list[Sample]) -> list[str]:
    lines = [
        "| # | warm-up | status | pod/slot | submit to step start ms | server: to delivery ms "
        "| agent: delivery to start ms | POST ms |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for s in samples:
        lines.append(
            f"| {s.index} | {'yes' if s.warmup else 'no'} | {s.status} | `{s.where}` "
            f"| {fmt(s.latency_ms)} | {fmt(s.server_ms)} | {fmt(s.agent_ms)} | {s.post_ms:.1f} |"
        )
    return lines


def phase_section(phase: LatencyPhase) -> list[str]:
    lines = [f"### {phase.name}", ""]
    if phase.setup:
        lines += [f"Setup: {phase.setup}.", ""]
    measured = phase.measured()
    warmups = min(len(phase.samples), phase.warmups)
    lines.append(
        f"{len(phase.samples)} tasks in {phase.seconds:.1f} s ({warmups}"
        f" warm-ups, {len(measured)} measured); {phase.stalls} stalled (step started more than "
        f"{STALL_SECONDS:g} s after the submission); {len(phase.failures())} did not succeed."
        + (f" **{phase.stopped}.**" if phase.stopped else "")
    )
    lines.append("")
    odd = [s for s in phase.samples if s.stalled or s.status != "succeeded"]
    if odd and not phase.stopped:
        lines += ["Tasks that stalled or did not succeed:", "", *sample_rows(odd), ""]
    for sample in phase.failures():
        lines.append(
            f"* `{sample.task_id}` ended {sample.status}: {sample.reason or '(no reason)'}"
        )
    if phase.failures():
        lines.append("")
    stats = phase.stats()
    if stats:
        lines += [*stats_rows(list(stats.values())), ""]
    if phase.usage is not None:
        lines += [
            f"Resources used during the {len(measured)} measured tasks (one at a time, so this"
            " is the cost of one task, with the server's own background passes and, in the one"
            " idle slot phase, the held tasks' shells included):",
            "",
            *usage_rows(phase.usage, len(measured)),
            "",
        ]
    if phase.stopped or len(measured) < 2:
        lines += ["Every task of this phase:", "", *sample_rows(phase.samples), ""]
    return lines


def throughput_section(t: Throughput) -> list[str]:
    lines = [
        f"{t.tasks} tasks of `true`, submitted from {t.concurrency} client threads (one keep-alive"
        " connection each).",
        "",
        "| | |",
        "|---|---|",
        f"| accepted | {t.submitted} of {t.tasks} ({len(t.submit_errors)} refused or failed) |",
        f"| submission rate (the ceiling) | {t.submit_rate:,.1f} tasks/s "
        f"({t.last_accepted - t.first_submit:.2f} s for all POSTs) |",
        f"| completions per second | **{t.completion_rate:,.1f} tasks/s** "
        f"({t.last_finish - t.first_submit:.2f} s from the first submission to the last "
        "`finished_at`) |"
        if t.drained
        else f"| completions per second | not all tasks ended within {DRAIN_TIMEOUT:g} s |",
        f"| final states | {', '.join(f'{k}: {v}' for k, v in sorted(t.statuses.items()))} |",
        "| finished, seconds after the first submission | "
        + ", ".join(f"{k}: {v:.2f} s" for k, v in t.finish_after.items())
        + " |",
        f"| a freed slot given to a waiting task more than {STALL_SECONDS:g} s later | "
        f"{len(t.slow_handoffs)} of {t.handoff.n if t.handoff else 0} hand-overs |",
        "",
    ]
    lines += stats_rows([s for s in (t.post, t.dispatch_wait, t.run_and_report, t.handoff) if s])
    lines.append("")
    if t.usage is not None:
        lines += [
            f"Resources used while the {t.tasks} tasks were submitted and run:",
            "",
            *usage_rows(t.usage, t.tasks),
            "",
        ]
    problems = [*t.submit_errors[:5], *t.not_succeeded[:10], *t.slow_handoffs[:10]]
    if problems:
        lines += ["Tasks that did not go as they should:", "", *(f"* {p}" for p in problems), ""]
    return lines


def usage_rows(usage: Usage, tasks: float, per: str = "task") -> list[str]:
    """CPU per process (and PostgreSQL's counters) over ``usage``, in all and per ``per``."""
    capacity = usage.seconds * cpu_count()
    lines = [
        f"| over {usage.seconds:.1f} s of wall time ({capacity:.1f} CPU-seconds on {cpu_count()} "
        f"CPUs) | in all | share of the CPUs | per {per} |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in usage.cpu.items():
        lines.append(
            f"| CPU: {name} | {seconds:.2f} s | {seconds / capacity * 100:.0f}% "
            f"| {seconds / tasks * 1000:.1f} ms |"
        )
    total = sum(usage.cpu.values())
    lines.append(
        f"| CPU: all of the above | {total:.2f} s | {total / capacity * 100:.0f}% "
        f"| {total / tasks * 1000:.1f} ms |"
    )
    others = usage.others()
    lines.append(
        f"| CPU: other processes on this machine | {others:.2f} s "
        f"| {others / capacity * 100:.0f}% | |"
    )
    if usage.db:
        for name in ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted"):
            value = usage.db.get(name, 0.0)
            lines.append(f"| PostgreSQL `{name}` | {value:,.0f} | | {value / tasks:.1f} |")
    return lines


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def goal_rows(results: list[BackendResult]) -> list[str]:
    lines = [
        "| goal | " + " | ".join(r.backend for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]

    def latency(phase: LatencyPhase | None, attr: str) -> str:
        if phase is None:
            return "-"
        stats = phase.stats().get("submit to step start (client)")
        if stats is None:
            stalled = next((s for s in phase.samples if s.stalled), None)
            if stalled is not None:
                return (
                    f"**missed**: task {stalled.index + 1} waited {fmt(stalled.latency_ms, 0)} ms"
                    f" (the 1st: {fmt(phase.samples[0].latency_ms)} ms); phase stopped"
                )
            return "not measured"
        value = float(getattr(stats, attr))
        limit = GOALS[f"{attr}_ms"]
        return f"{value:,.1f} ms ({'reached' if value <= limit else 'missed'})"

    for label, attr in (("p50 <= 50 ms", "p50"), ("p99 <= 200 ms", "p99")):
        for phase_name in ("plain", "one idle slot"):
            cells = []
            for r in results:
                phase = r.plain if phase_name == "plain" else r.held
                cells.append(latency(phase, attr))
            lines.append(f"| latency {label}, {phase_name} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        t = r.throughput
        if t is None or not t.drained:
            cells.append("-")
        else:
            reached = t.completion_rate >= GOALS["per_second"]
            cells.append(f"{t.completion_rate:,.1f}/s ({'reached' if reached else 'missed'})")
    lines.append("| >= 300 completions/s | " + " | ".join(cells) + " |")
    return lines


def ratio_rows(results: list[BackendResult], base: Baselines) -> list[str]:
    lines = [
        "| ratio of p50s | " + " | ".join(r.backend for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    rows: list[tuple[str, Callable[[BackendResult], float | None]]] = []

    def p50(phase: LatencyPhase | None, name: str) -> float | None:
        stats = phase.stats().get(name) if phase else None
        return stats.p50 if stats else None

    def ratio(numerator: float | None, denominator: float | None) -> float | None:
        return numerator / denominator if numerator and denominator else None

    client = "submit to step start (client)"
    rows.append(
        (
            "one idle slot: submit to step start / `sh -c date` spawn to clock read",
            lambda r: ratio(p50(r.held, client), base.exec_shell.p50),
        )
    )
    rows.append(
        (
            "one idle slot: submit to step start / `GET /healthz`",
            lambda r: ratio(p50(r.held, client), r.healthz.p50 if r.healthz else None),
        )
    )
    rows.append(
        (
            "one idle slot: agent's delivery to step start / `sh -c date` spawn to clock read",
            lambda r: ratio(p50(r.held, "delivery to step start (agent)"), base.exec_shell.p50),
        )
    )
    rows.append(
        (
            "plain: submit to step start / `GET /healthz`",
            lambda r: ratio(p50(r.plain, client), r.healthz.p50 if r.healthz else None),
        )
    )
    rows.append(
        (
            "throughput: submission rate / completion rate",
            lambda r: (
                ratio(r.throughput.submit_rate, r.throughput.completion_rate)
                if r.throughput
                else None
            ),
        )
    )
    for label, compute in rows:
        cells = []
        for r in results:
            value = compute(r)
            cells.append("-" if value is None else f"{value:,.1f}x")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def report(
    results: list[BackendResult],
    base: Baselines,
    *,
    args: argparse.Namespace,
    command: str,
    started: datetime,
    seconds: float,
    cpu_checks: tuple[float, float],
    load: tuple[float, float, float],
    others: list[str],
    code: tuple[str, str],
) -> str:
    info = machine()
    info["Load before the run"] = (
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min); busiest "
        f"other processes over 2 s: {', '.join(others) or 'none'} (100% = one CPU)"
    )
    info["CPU check"] = (
        f"`sum(range(5_000_000))`, best of 5: {cpu_checks[0]:.1f} ms before the run, "
        f"{cpu_checks[1]:.1f} ms after"
    )
    for r in results:
        if r.backend == "postgresql":
            db = r.database
            info["PostgreSQL server"] = (
                f"{db.get('server_version', '?')} on 127.0.0.1 (TCP), fsync={db.get('fsync')}, "
                f"synchronous_commit={db.get('synchronous_commit')}, "
                f"full_page_writes={db.get('full_page_writes')} (`tests/pg_server.py`: commits "
                "do not wait for the disk)"
            )
    lines = [
        "# slotpool task dispatch benchmark",
        "",
        f"* Date: {started.strftime('%Y-%m-%d %H:%M:%S UTC')} (whole run: {seconds:.0f} s)",
        f"* Command: `{command}`",
        f"* Code: {code[0]}"
        + (
            ""
            if code[0] == code[1]
            else f". **The code changed during the run**, to {code[1]}: rerun before relying on it"
        ),
        f"* Setup: one `slotpool server` process (uvicorn, one worker) with a local pool of "
        f"{PODS} agent processes x {SLOTS_PER_POD} slots started by its local runtime; server "
        "log level `warning`, everything else at its defaults (claim long poll "
        f"{CLAIM_WAIT_SECONDS} s, heartbeat 5 s). Client, server, agents and database share the "
        "same CPUs.",
        f"* Latency phases: sequential tasks of `{DATE_COMMAND}` ({args.warmups} warm-ups, then "
        f"{args.n} measured); the next is submitted once the previous has ended. Latency = the "
        "time `date` printed minus `time.time()` just before the POST (same clock). A phase "
        f"stops after {args.stall_limit} stalled task(s) (step started more than "
        f"{STALL_SECONDS:g} s after the submission): each would take the claim long poll's "
        f"{CLAIM_WAIT_SECONDS} s.",
        f"* Throughput: {args.tasks} tasks of `true` from {args.concurrency} threads; "
        "completions per second = tasks / (last `finished_at` - first submission).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        "",
        "## Goals",
        "",
        *goal_rows(results),
        "",
        "## Baselines (client process, no server involved)",
        "",
        *stats_rows([base.exec_date, base.run_date, base.exec_shell, base.run_shell]),
        "",
    ]
    for r in results:
        lines += [f"## {r.backend}", ""]
        if r.backend == "sqlite":
            lines += [
                f"SQLite {r.database.get('version')}, a file in a temporary directory, WAL, "
                "synchronous=NORMAL (the server's pragmas).",
                "",
            ]
        lines += [
            f"Pool created and its {PODS} pods ready in {r.pods_ready_seconds:.1f} s; "
            f"backend done in {r.seconds:.0f} s.",
            "",
        ]
        if r.healthz:
            lines += [*stats_rows([r.healthz]), ""]
        if r.idle is not None:
            lines += [
                f"The server and its {PODS} idle agents, doing nothing for {r.idle.seconds:.1f} s "
                "(the long-poll claims re-checking every second, heartbeats, the server's "
                "once-a-second passes); the figures are per second:",
                "",
                *usage_rows(r.idle, r.idle.seconds, "second"),
                "",
            ]
        for phase in (r.plain, r.held):
            if phase is not None:
                lines += phase_section(phase)
        if r.throughput is not None:
            lines += ["### throughput", "", *throughput_section(r.throughput)]
        lines += ["### logs", ""]
        if r.log_issues:
            lines += [
                f"{len(r.log_issues)} warning or error lines in the server's and agents' logs; "
                "the first ones:",
                "",
                "```",
                *r.log_issues[:15],
                "```",
                "",
            ]
        else:
            lines += ["No warning or error line in the server's or the agents' logs.", ""]
    lines += ["## Ratios", "", *ratio_rows(results, base), ""]
    drift = abs(cpu_checks[1] - cpu_checks[0]) / min(cpu_checks) * 100
    if drift > 15:
        lines += [
            f"The CPU check moved by {drift:.0f}% between the start and the end of this run: the "
            "(virtual) machine's speed changed meanwhile, so differences of that order between "
            "the backends, or against another run, are noise rather than a finding.",
            "",
        ]
    lines += ["## Interpretation", "", *interpretation(results, base), ""]
    return "\n".join(lines)


def latency_bullet(r: BackendResult, phase: LatencyPhase, base: Baselines) -> list[str]:
    """One interpretation bullet for a latency phase: its median split into its parts."""
    lines = []
    stats = phase.stats()
    total = stats.get("submit to step start (client)")
    if total is not None:
        server = stats.get("submit to delivery (server)")
        agent = stats.get("delivery to step start (agent)")
        post = stats.get("POST /api/v1/tasks round trip")
        cost = ""
        if phase.usage is not None:
            n = len(phase.measured())
            usage = phase.usage
            busy = usage.server_cpu() / usage.seconds * 100
            cost = (
                f" One task at a time kept the server process {busy:.0f}% busy (of one CPU): "
                f"{usage.server_cpu() / n * 1000:.0f} ms of server CPU per task, the benchmark's "
                "own log stream and status read included"
            )
            if (transactions := usage.transactions()) is not None:
                cost += f", and {transactions / n:.0f} PostgreSQL transactions per task"
            cost += "."
            if busy > 70:
                cost += (
                    " So even one task at a time leaves the server little idle time: part of a "
                    "latency can be waiting behind the previous task's remaining requests (the "
                    "agent's next claim, its result, the end of the log stream)."
                )
        stalls = (
            f" {phase.stalls} of its tasks waited more than {STALL_SECONDS:g} s."
            if phase.stalls
            else f" No task waited more than {STALL_SECONDS:g} s."
        )
        lines.append(
            f"* **{r.backend}, {phase.name}:** p50 {total.p50:.1f} ms, p99 {total.p99:.1f} ms "
            f"(goals 50 and 200 ms).{stalls} Of the p50, "
            f"{server.p50 if server else 0:.1f} ms are the server's (submission to delivery; "
            f"the POST alone takes {post.p50 if post else 0:.1f} ms at the median against "
            f"{r.healthz.p50 if r.healthz else 0:.1f} ms for `GET /healthz`) and "
            f"{agent.p50 if agent else 0:.1f} ms the agent's (the claim answer's commit and trip,"
            " the working directory, spawning the step), of which spawning `sh -c 'date'` from "
            f"Python is {base.exec_shell.p50:.1f} ms.{cost}"
        )
    if failed := phase.failures():
        reasons = Counter(f"{s.status}: {s.reason}" for s in failed)
        lines.append(
            f"* **{r.backend}, {phase.name}: {len(failed)} task(s) did not succeed**: "
            + "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common())
            + " (see the agents' log lines above)."
        )
    return lines


def interpretation(results: list[BackendResult], base: Baselines) -> list[str]:
    """What the numbers of this run say, per finding, then the mechanisms behind them."""
    lines: list[str] = []
    for r in results:
        plain, held, t = r.plain, r.held, r.throughput
        if plain is not None and plain.stalls:
            first, stalled = plain.samples[0], next(s for s in plain.samples if s.stalled)
            lines.append(
                f"* **{r.backend}, plain: tasks wait for the claim long poll.** The first task's "
                f"step started {fmt(first.latency_ms)} ms after its submission; task "
                f"{stalled.index + 1} (submitted once the first had ended, both agents idle) "
                f"waited {fmt(stalled.latency_ms)} ms, {fmt(stalled.server_ms)} ms of it on the "
                f"server between its submission and its delivery in a claim answer: the claim "
                f"long poll's {CLAIM_WAIT_SECONDS} s. Both tasks ran in the same slot "
                f"(`{stalled.where}`). See *Tasks stuck until the claim long poll ends* below."
            )
        for phase in (plain, held):
            if phase is not None:
                lines += latency_bullet(r, phase, base)
        if t is not None and t.usage is not None:
            usage = t.usage
            server_cpu = usage.server_cpu()
            per_task = server_cpu / t.tasks * 1000
            busy = server_cpu / usage.seconds * 100
            machine = (sum(usage.cpu.values()) + usage.others()) / (usage.seconds * cpu_count())
            agents_ms = usage.cpu.get(f"agents ({PODS} processes)", 0.0) / t.tasks * 1000
            db = ""
            if (transactions := usage.transactions()) is not None:
                db = (
                    f" PostgreSQL took {usage.cpu.get('PostgreSQL', 0.0) / t.tasks * 1000:.1f} "
                    f"ms of CPU and {transactions / t.tasks:.1f} transactions per task."
                )
            lines.append(
                f"* **{r.backend}, throughput: {t.completion_rate:.1f} completions/s, limited by "
                f"the server process's CPU.** It used {per_task:.0f} ms of CPU per task and was "
                f"busy {busy:.0f}% of one CPU for the whole run, while the machine as a whole "
                f"was {machine * 100:.0f}% busy ({cpu_count()} CPUs): one Python process can "
                f"complete at most about {1000 / per_task:.0f} tasks per second this way. The "
                f"agents took {agents_ms:.1f} ms per task.{db} Submissions alone went at "
                f"{t.submit_rate:.1f}/s (their "
                f"POSTs took {t.post.p50 if t.post else 0:.0f} ms at the median: the server's "
                "event loop was saturated), so the ceiling is the same process, shared between "
                f"accepting and running tasks. {len(t.slow_handoffs)} of "
                f"{t.handoff.n if t.handoff else 0} freed slots waited more than "
                f"{STALL_SECONDS:g} s for their next task while tasks were queued"
                + (
                    f"; at the median a freed slot had its next task delivered "
                    f"{t.handoff.p50:.0f} ms later ({t.handoff.maximum:,.0f} ms at most)."
                    if t.handoff
                    else "."
                )
            )
    if results and results[0].idle is not None:
        idle = results[0].idle
        lines.append(
            f"* Idle, the server used {idle.server_cpu() / idle.seconds * 1000:.0f} ms of CPU per "
            "second with its two agents"
            + "".join(
                f" ({r.backend}: {txn / r.idle.seconds:.0f} transactions per second)"
                for r in results
                if r.idle is not None and (txn := r.idle.transactions()) is not None
            )
            + ": each agent's pending claim re-checks the database every second "
            "(`RECHECK_SECONDS` in `services/notify.py`), plus heartbeats and the server's "
            "once-a-second sweeper and local-pod passes."
        )
    if any(r.plain is not None and r.plain.stalls for r in results):
        return [*lines, "", *STALL_MECHANISM, "", *CPU_MECHANISMS]
    return [*lines, "", *CPU_MECHANISMS]


# Not re-measured by each run: read from the code and, for the statement counts and the profile,
# measured once (2026-11-23, PostgreSQL with log_statement=all on the code of the final run;
# py-spy --gil on the server during a throughput run on SQLite). Check them against the code
# before relying on them.
STALL_MECHANISM = [
    "### Tasks stuck until the claim long poll ends",
    "",
    "Shown because a task of the plain phase stalled. The cause found when this benchmark was "
    "written (2026-11-23; the code changed the same day so that a claim also delivers a step "
    "placed in a slot it did not offer): check whether it is still the one. An agent opens a "
    "claim for the slots that are free when it opens it (`_claim_loop` and "
    "`_offer` in `agent/agent.py`) and keeps it open up to `claim_wait_seconds` (25 s). The "
    "server answers a claim only with assignments in the slots that claim offered "
    "(`AgentService._answer` in `services/agents.py`, the loop over `free_slots`). The "
    "dispatcher, however, places a task by the database's view: the lowest idle slot of the "
    "fullest ready pod (`place` in `domain/tasks.py`, called from `services/dispatch.py`). When "
    "a step ends, its result frees its slot in the database at once, but the agent's pending "
    "claim (opened while that slot was busy) does not offer it, and the agent only waits for a "
    "freed slot when it has nothing else to offer. So the next task is placed in exactly that "
    "slot, the claim is woken, finds nothing for the slots it offered and goes back to waiting; "
    "the task is delivered only when that claim times out and the agent claims again, about "
    "25 s later. The other agent, idle with all slots offered, does not get it: placement "
    "prefers the fuller pod and then the lower pod id, not an agent that is listening. With "
    "tasks arriving one at a time, every task but the first waits about 25 s, the p50 of the "
    "plain phase is therefore about 25,000 ms, and 200 sequential tasks would take about 80 "
    "minutes, so the phase stops at the first such task. A full queue hides it (every claim "
    "gets work in a slot it offered and the next claim offers everything free), which is why "
    "the throughput run does not show it. The one idle slot phase avoids it by construction: "
    "with every other slot held, the agent has nothing to offer while its step runs, so it "
    "opens a new claim for exactly the freed slot. Ways out, for whoever fixes it: the agent "
    "opens a new claim whenever a slot frees (ending the pending one), or the step result's "
    "answer carries the freed slot's next assignment, or placement prefers slots offered by a "
    "pending claim.",
]
CPU_MECHANISMS = [
    "### Where the server's CPU goes",
    "",
    "Not re-measured by each run: a one-off look (2026-11-23) at the statements the server "
    "sends and at a profile of the server process; check it against the code before relying "
    "on it.",
    "",
    "* Statements (PostgreSQL's statement log, 20 to 200 tasks per phase): one task under load "
    "(throughput) costs about 46 statements (BEGIN, COMMIT and the probe below included) in "
    "about 7 units of work (BEGIN ... COMMIT); one task of the plain phase about 120 "
    "statements in 21.5 units of work, about 5 of which are the benchmark's own reads (the "
    "log stream and the status read); one task of the one idle slot phase about 130, because "
    "every claim answer reads the whole task row (steps, results, env as JSON) of every busy "
    "slot of the pod, here the 7 held ones: 25 such reads per task against 13 in the plain "
    "phase and 3.3 under load. Every unit of work is preceded by an extra round trip, the "
    "`pool_pre_ping` probe (`store/db.py`), which PostgreSQL counts as a transaction of its "
    "own (hence about twice as many `xact_commit` as units of work in the tables above). The "
    "pool row and its freeze windows are loaded 2 to 3 times per task (the submission's "
    "existence check and the configuration hash of every dispatch pass), and every agent "
    "request looks its token up and then runs `UPDATE pool_tokens SET last_used_at ...`, "
    "which almost never matches a row (`TOUCH_INTERVAL` is 60 s) but costs a statement and a "
    "commit each time.",
    "* Python: sampled with the interpreter lock held, SQLAlchemy's ORM execution (statement "
    "cache keys, compiling, loading rows into objects) is the largest share, then the "
    "FastAPI/Starlette request stack and the asyncio loop itself; on SQLite each statement "
    "also crosses to aiosqlite's worker thread and back. The dispatcher, the claim handler, "
    "the agent authentication and the result handler each take a few percent; no single "
    "slotpool function dominates: the cost is the number of units of work and statements per "
    "task. For 300 completions per second one process would need about 3 ms of CPU per task, "
    "over ten times less than now, or several server processes sharing the database.",
    "* The dispatch latency's server part (30 to 45 ms at the median here) is mostly the POST "
    "itself: a unit of "
    "work to insert the task, a dispatch pass in a second one, a third to read the task back; "
    "the delivery then needs the woken claim's own units of work (pod id, dispatch pass, "
    "answer). SQLite and PostgreSQL differ little: the time is the server's Python, not the "
    "database (PostgreSQL here does not wait for the disk, fsync=off).",
]


def usage_line(usage: Usage, tasks: float) -> str:
    """Per task: CPU ms of each process, and PostgreSQL transactions."""
    parts = [f"{name} {seconds / tasks * 1000:.1f}" for name, seconds in usage.cpu.items()]
    line = "CPU ms: " + ", ".join(parts) + f", others {usage.others() / tasks * 1000:.1f}"
    if (transactions := usage.transactions()) is not None:
        line += f"; {transactions / tasks:.1f} transactions"
    return line


def print_summary(results: list[BackendResult], base: Baselines) -> None:
    print(f"\nbaseline sh -c date: p50 {base.exec_shell.p50:.2f} ms to its clock read")
    for r in results:
        print(f"\n{r.backend}")
        if r.healthz:
            print(f"  healthz p50 {r.healthz.p50:.2f} ms")
        if r.idle is not None:
            print("  idle, per second: " + usage_line(r.idle, r.idle.seconds))
        for phase in (r.plain, r.held):
            if phase is None:
                continue
            print(f"  {phase.name}: {len(phase.samples)} tasks, {phase.stalls} stalled")
            for s in phase.stats().values():
                print(
                    f"    {s.name:<32} n={s.n:<4} p50 {s.p50:9.1f}  p90 {s.p90:9.1f}  "
                    f"p99 {s.p99:9.1f}  max {s.maximum:9.1f} ms"
                )
            if phase.usage is not None:
                print("    " + usage_line(phase.usage, len(phase.measured())))
            if len(phase.measured()) < 2:
                for smp in phase.samples:
                    print(
                        f"    #{smp.index} {smp.status} {smp.where} latency "
                        f"{fmt(smp.latency_ms)} ms, server {fmt(smp.server_ms)} ms"
                    )
        t = r.throughput
        if t is not None:
            print(
                f"  throughput: {t.completion_rate:.1f} completions/s, submissions "
                f"{t.submit_rate:.1f}/s, {dict(t.statuses)}, {len(t.slow_handoffs)} slow "
                "hand-overs, "
                f"finished after {t.finish_after}"
            )
            if t.usage is not None:
                print("  " + usage_line(t.usage, t.tasks))
        print(f"  log issues: {len(r.log_issues)}")
        for line in r.log_issues[:5]:
            print(f"    {line}")


# -- entry point -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark slotpool's task dispatch with real agents, SQLite and PostgreSQL."
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, action="append", help="Only this backend (repeatable)."
    )
    parser.add_argument("--n", type=int, default=200, help="Measured sequential tasks (200).")
    parser.add_argument("--warmups", type=int, default=10, help="Warm-up tasks per phase (10).")
    parser.add_argument("--tasks", type=int, default=600, help="Throughput tasks (600).")
    parser.add_argument("--concurrency", type=int, default=16, help="Submitting threads (16).")
    parser.add_argument(
        "--stall-limit",
        type=int,
        default=1,
        help="End a latency phase after this many stalled tasks (1; 0: never).",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"Markdown report (default {DEFAULT_OUTPUT.relative_to(ROOT)}).",
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; write no report.")
    args = parser.parse_args(argv)
    if args.n < 2 or args.warmups < 0 or args.tasks < 2 or args.concurrency < 1:
        parser.error("need --n >= 2, --warmups >= 0, --tasks >= 2, --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # On SIGTERM, unwind like on Ctrl-C so the processes we started are ended by their finally.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    backends: list[str] = args.backend or list(BACKENDS)
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        [".venv/bin/python", "bench/bench_dispatch.py", *sys.argv[1:]]
    )
    started = datetime.now(UTC)
    clock = time.monotonic()
    code_before = code_fingerprint()
    load = os.getloadavg()
    others = busy_processes()
    print(f"load average {load}, busiest other processes: {others}", file=sys.stderr)
    cpu_before = cpu_check_ms()
    print("baselines ...", file=sys.stderr, flush=True)
    base = spawn_baselines(10, 200)
    results: list[BackendResult] = []
    for backend in dict.fromkeys(backends):
        print(f"benchmarking {backend} ...", file=sys.stderr, flush=True)
        run = run_sqlite if backend == "sqlite" else run_postgres
        results.append(run(args))
    cpu_after = cpu_check_ms()
    seconds = time.monotonic() - clock
    print_summary(results, base)
    if not args.no_write:
        text = report(
            results,
            base,
            args=args,
            command=command,
            started=started,
            seconds=seconds,
            cpu_checks=(cpu_before, cpu_after),
            load=load,
            others=others,
            code=(code_before, code_fingerprint()),
        )
        args.output.write_text(text, encoding="utf-8")
        print(f"\nwrote {args.output} ({seconds:.0f} s in all)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
