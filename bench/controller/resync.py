"""Part 3: what one resync pass over many pools costs, in-process on the fake runtime, against
plain reads of the same rows (see the package's docstring)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import math
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from tests.support.fake_runtime import FakeRuntime

from bench.controller.common import RESYNC_CONFIG, server_settings
from bench.harness.cpu import postgres_seconds
from bench.harness.databases import Database, database
from slotpool.api.app import build_services
from slotpool.api.deps import Services
from slotpool.clock import utc_now
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.pods import PodState
from slotpool.domain.pools import Pool
from slotpool.runtime.base import RuntimeRegistry
from slotpool.services.ports import SyncReport
from slotpool.store.db import sync_url
from slotpool.store.models import PodRow, SlotRow
from slotpool.store.uow import Store


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


@dataclass
class Counted:
    """What the calls of one measure did: errors and the Pods they changed."""

    errors: int = 0
    writes: int = 0
    first_error: str = ""

    async def call(self, call: Callable[[Any], Awaitable[Any]], item: Any) -> None:
        try:
            outcome = await call(item)
        except Exception as exc:  # counted and reported; the pass goes on with the next pool
            self.errors += 1
            self.first_error = self.first_error or repr(exc)
            return
        if isinstance(outcome, SyncReport):
            self.writes += len(outcome.created) + len(outcome.removed) + len(outcome.ended)


async def measure(
    name: str,
    items: Sequence[Any],
    call: Callable[[Any], Awaitable[Any]],
    db: Database,
    fake: FakeRuntime,
    *,
    batch: int = 1,
    trace: bool = False,
) -> Measure:
    counted = Counted()
    reads_before = fake.calls["read_token"]
    reset_peak_rss()
    rss_before = proc_status_mb("VmRSS")
    if trace:
        tracemalloc.start()
    db_before, cpu_before = postgres_seconds(db.postmaster), time.process_time()
    began = time.perf_counter()
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        if batch == 1:  # no task per call: a pass as the controller's worker makes it
            await counted.call(call, chunk[0])
        else:
            await asyncio.gather(*(counted.call(call, item) for item in chunk))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_before
    traced = None
    if trace:
        traced = tracemalloc.get_traced_memory()[1] / 1024 / 1024
        tracemalloc.stop()
    return Measure(
        name=name,
        count=len(items),
        wall=wall,
        cpu=cpu,
        db_cpu=postgres_seconds(db.postmaster) - db_before,
        rss_before_mb=rss_before,
        rss_after_mb=proc_status_mb("VmRSS"),
        rss_peak_mb=proc_status_mb("VmHWM"),
        traced_peak_mb=traced,
        token_reads=fake.calls["read_token"] - reads_before,
        errors=counted.errors,
        writes=counted.writes,
        first_error=counted.first_error,
    )


async def seed_pools(
    store: Store,
    services: Services,
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
    config = parse_config(copy.deepcopy(RESYNC_CONFIG), pool_type=PoolType.k8s)
    now = datetime.now(UTC) - timedelta(minutes=5)
    pools, pod_rows = [], []
    for i in range(count):
        pool = await services.pools.create(
            name=f"{prefix}-{i}-{ended}", description="", pool_type=PoolType.k8s, config=config,
            by="bench",
        )  # fmt: skip
        digest = services.pools.config_hash(pool)
        for j in range(pods + ended):
            live = j < pods
            name = f"slotpool-{pool.pool_id}-{'' if live else 'ended-'}{j:05d}"
            pod_rows.append(pod_row(pool.pool_id, name, digest, config.slots_per_pod, live, now))
            if live:
                fake.add(pool.pool_id, name, namespace=RESYNC_CONFIG["namespace"],
                         config_hash=digest, created_at=now)  # fmt: skip
        _token, value = await services.tokens.create(
            pool.pool_id, name="bench", expires_at=None, by="bench"
        )
        fake.tokens[pool.pool_id] = value
        pools.append(pool)
    await asyncio.to_thread(insert_pods, store.url, pod_rows, config.slots_per_pod, now)
    return pools


def pod_row(
    pool_id: str, name: str, digest: str | None, slots: int, live: bool, now: datetime
) -> dict[str, Any]:
    return {
        "pool_id": pool_id,
        "name": name,
        "state": (PodState.ready if live else PodState.failed).value,
        "config_hash": digest,
        "slots": slots,
        "reason": "" if live else "kubernetes pod ended: Failed",
        "phase": None if live else "Failed",
        "node": None,
        "agent_version": "bench",
        "registered_at": now,
        "last_heartbeat_at": now,
        "created_at": now,
        "updated_at": now,
    }


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


async def resync_backend(db: Database, description: str, args: argparse.Namespace) -> ResyncResult:
    result = ResyncResult(db.backend, description, args.pools, args.pods_per_pool)
    started = time.monotonic()
    store = Store(db.url)
    try:
        with tempfile.TemporaryDirectory(prefix="slotpool-bench-resync-") as work:
            settings = server_settings(Path(work), database_url=db.url)
            fake = FakeRuntime()
            services = build_services(
                store, settings, utc_now, RuntimeRegistry({PoolType.k8s: fake})
            )
            pools = await seed_pools(store, services, fake, args.pools, args.pods_per_pool)
            result.seed_seconds = time.monotonic() - started
            print(f"  {db.backend}: seeded {args.pools} pools in {result.seed_seconds:.1f} s")
            await passes(result, db, store, services, fake, pools, args)
    finally:
        await store.close()
    result.seconds = time.monotonic() - started
    return result


async def passes(
    result: ResyncResult,
    db: Database,
    store: Store,
    services: Services,
    fake: FakeRuntime,
    pools: list[Pool],
    args: argparse.Namespace,
) -> None:
    async def read(pool: Pool) -> int:
        async with store.reading() as uow:  # the cheapest unit of work there is
            return len(await uow.pods.of_pool(pool.pool_id))

    async def reconcile(pool: Pool) -> SyncReport:
        return await services.controller.run_pass(pool.pool_id, check_secret=False)

    extras = db.backend in args.extras
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
            f"  {db.backend}: {name:<45} {m.wall:7.2f} s wall, {m.per_ms:6.2f} ms/pool, "
            f"CPU {m.cpu:6.2f} s (+ database {m.db_cpu:5.2f} s), errors {m.errors} "
            f"{m.first_error}",
            flush=True,
        )
    for ended in args.history if extras else []:
        (pool,) = await seed_pools(
            store, services, fake, 1, args.pods_per_pool, ended, prefix="history"
        )
        await reconcile(pool)  # its first pass: the Secret check
        timings = [(await timed(reconcile, pool), await timed(read, pool))
                   for _ in range(args.history_runs)]  # fmt: skip
        pass_ms = statistics.median(t[0] for t in timings)
        read_ms = statistics.median(t[1] for t in timings)
        result.history.append((ended, pass_ms, read_ms))
        print(
            f"  {db.backend}: pool with {args.pods_per_pool} live and {ended} ended Pods: "
            f"pass {pass_ms:.1f} ms, of_pool {read_ms:.1f} ms",
            flush=True,
        )


async def timed(call: Callable[[Pool], Awaitable[Any]], pool: Pool) -> float:
    began = time.perf_counter()
    await call(pool)
    return (time.perf_counter() - began) * 1000


def run_resync(args: argparse.Namespace) -> list[ResyncResult]:
    results = []
    for backend in args.backends:
        with database(backend, migrate=True) as db:
            if backend == "sqlite":
                description = f"SQLite {db.settings['version']} (WAL, synchronous=NORMAL)"
            else:
                description = (
                    f"PostgreSQL {db.settings.get('server_version', '?')} (fsync=off, test server)"
                )
            results.append(asyncio.run(resync_backend(db, description, args)))
    return results
