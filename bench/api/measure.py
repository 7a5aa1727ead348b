"""The REST API benchmark's measurements: the data set, the API's requests and the raw
driver's floors, per backend."""

from __future__ import annotations

import copy
import json
import random
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb
from tests.api.test_pools_api import SEED_RIGHT
from tests.support.server import server_process, server_settings

from bench.harness.databases import Database, database
from bench.harness.stats import Stats, Timed, elapsed_ms, measure, timed_get

POOLS = "/api/v1/agent-pools"
# (warm-ups, measured runs) per benchmark.
RUNS: dict[str, tuple[int, int]] = {
    "healthz": (20, 200),
    "list_1000": (5, 50),
    "config_put": (10, 200),
    "raw_select_1000": (5, 50),
    "raw_update": (10, 200),
}
ROW_ORDER = ("healthz", "list_1000", "raw_select_1000", "config_put", "raw_update")
SEEDING = "create (seeding)"
DESCRIPTIONS = {
    "healthz": "`GET /healthz`: HTTP floor of the same server and connection",
    "list_1000": "`GET /api/v1/agent-pools?limit=1000`, the 1,000 items checked",
    "raw_select_1000": "the same pools, windows and total with the sync driver, then `json.dumps`",
    "config_put": "`PUT .../{pool_id}/k8s-config`, random pool, new image each time",
    "raw_update": "one `UPDATE agent_pools SET k8s_config = ...` + `COMMIT`, sync driver",
    SEEDING: "the `POST /api/v1/agent-pools` that build the data set, for "
    "information (the table grows meanwhile)",
}
RATIOS = (
    ("list_1000", "raw_select_1000"),
    ("list_1000", "healthz"),
    ("config_put", "raw_update"),
    ("config_put", "healthz"),
)
# The columns the API reads, spelled out so both the raw baseline and the API fetch the same data.
POOL_COLUMNS = (
    "pool_id, name, description, pool_type, k8s_config, revision, one_time_unfreeze_until, "
    "one_time_unfreeze_by, one_time_unfreeze_at, one_time_unfreeze_note, created_by, "
    "created_at, updated_by, updated_at"
)
SCHEDULE_COLUMNS = (
    "id, pool_id, position, from_time, to_time, weekdays, timezone, policy, note, "
    "created_at, updated_at"
)


@dataclass
class BackendResult:
    backend: str
    database: Database
    stats: dict[str, Stats] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    list_bytes: int = 0
    seed_seconds: float = 0.0

    def ratio(self, numerator: str, denominator: str) -> float:
        return self.stats[numerator].p50 / self.stats[denominator].p50


def timed(name: str, run: Timed, scale: float) -> Stats:
    warmups, n = RUNS[name]
    return measure(name, run, warmups=warmups, n=max(2, round(n * scale)))


# -- payloads ----------------------------------------------------------------------------------


def seed_config() -> dict[str, Any]:
    """The API tests' realistic configuration: image, env, limits, replicas, one freeze window."""
    config: dict[str, Any] = copy.deepcopy(SEED_RIGHT)
    if not config.get("freeze_schedules"):
        raise RuntimeError("SEED_RIGHT no longer carries a freeze window; update the benchmark")
    return config


def pool_config(base: dict[str, Any], i: int) -> dict[str, Any]:
    config = copy.deepcopy(base)
    config["image"] = f"hashicorp/terraform:1.6.{i}"
    config["env"] = {**config.get("env", {}), "POOL_INDEX": str(i)}
    return config


def stored_config(config: dict[str, Any]) -> dict[str, Any]:
    """What the API keeps in ``agent_pools.k8s_config``: the windows live in their own table."""
    return {k: v for k, v in config.items() if k != "freeze_schedules"}


# -- the API benchmarks ------------------------------------------------------------------------


@contextmanager
def api_client(url: str, workdir: Path) -> Iterator[httpx.Client]:
    """``slotpool server`` in its own process on ``url``'s database; a warm keep-alive client."""
    token = "bench-" + secrets.token_urlsafe(24)
    settings = server_settings(workdir, admin=token, database_url=url)
    with (
        server_process(settings, workdir / "server.log", grace=15.0) as server,
        server.client(timeout=60.0) as client,
    ):
        yield client


def seed(
    result: BackendResult, client: httpx.Client, pools: int, base: dict[str, Any]
) -> list[str]:
    """The pools of the data set, each POST timed."""
    ids: list[str] = []
    samples: list[float] = []
    started = time.monotonic()
    for i in range(pools):
        body = {
            "name": f"bench-pool-{i:04d}",
            "pool_type": "k8s",
            "k8s_config": pool_config(base, i),
        }
        start = time.perf_counter_ns()
        response = client.post(POOLS, json=body)
        samples.append(elapsed_ms(start))
        if response.status_code != 201:
            raise RuntimeError(f"creating pool {i}: {response.status_code} {response.text}")
        ids.append(response.json()["pool_id"])
    result.seed_seconds = time.monotonic() - started
    result.stats[SEEDING] = Stats.of(SEEDING, samples)
    return ids


def bench_api(result: BackendResult, client: httpx.Client, pools: int, scale: float) -> list[str]:
    base = seed_config()
    ids = seed(result, client, pools, base)

    def healthz(_: int) -> float:
        return timed_get(client, "/healthz")

    def list_all(_: int) -> float:
        start = time.perf_counter_ns()
        response = client.get(POOLS, params={"limit": 1000})
        took = elapsed_ms(start)
        if response.status_code != 200:
            raise RuntimeError(f"list: {response.status_code} {response.text[:500]}")
        page = response.json()
        if len(page["items"]) != min(pools, 1000) or page["total"] != pools:
            raise RuntimeError(f"list: {len(page['items'])} items, total {page['total']}")
        result.list_bytes = len(response.content)
        return took

    rng = random.Random(1000)

    def config_put(i: int) -> float:
        pool_id = rng.choice(ids)
        config = pool_config(base, 100_000 + i)
        start = time.perf_counter_ns()
        response = client.put(f"{POOLS}/{pool_id}/k8s-config", json=config)
        took = elapsed_ms(start)
        if response.status_code != 200:
            raise RuntimeError(f"put {pool_id}: {response.status_code} {response.text}")
        if response.json()["k8s_config"]["image"] != config["image"]:
            raise RuntimeError(f"put {pool_id}: the new image was not saved")
        return took

    for name, run in (("healthz", healthz), ("list_1000", list_all), ("config_put", config_put)):
        result.stats[name] = timed(name, run, scale)
    return ids


# -- the raw baselines -------------------------------------------------------------------------


def rows_as_dicts(cursor: sqlite3.Cursor | psycopg.Cursor[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def attach_schedules(pools: list[dict[str, Any]], schedules: list[dict[str, Any]]) -> None:
    by_pool: dict[str, list[dict[str, Any]]] = {p["pool_id"]: [] for p in pools}
    for schedule in schedules:
        if (windows := by_pool.get(schedule["pool_id"])) is not None:
            windows.append(schedule)
    for pool in pools:
        pool["freeze_schedules"] = by_pool[pool["pool_id"]]


class RawSQLite:
    """The floor: the same data through the synchronous driver on one open connection."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path)
        # The server's own pragmas (slotpool.store.db), so both pay the same durability.
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000",
                       "synchronous=NORMAL"):  # fmt: skip
            self._conn.execute(f"PRAGMA {pragma}")

    def select_all(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        pools = rows_as_dicts(
            self._conn.execute(
                f"SELECT {POOL_COLUMNS} FROM agent_pools ORDER BY name LIMIT ?", (limit,)
            )
        )
        placeholders = ",".join("?" * len(pools))
        schedules = rows_as_dicts(
            self._conn.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM freeze_schedules "
                f"WHERE pool_id IN ({placeholders}) ORDER BY pool_id, position",
                [p["pool_id"] for p in pools],
            )
        )
        (total,) = self._conn.execute("SELECT count(*) FROM agent_pools").fetchone()
        self._conn.commit()
        # SQLite hands JSON back as text; decode it, as psycopg does for JSONB.
        for pool in pools:
            if pool["k8s_config"] is not None:
                pool["k8s_config"] = json.loads(pool["k8s_config"])
        for schedule in schedules:
            schedule["weekdays"] = json.loads(schedule["weekdays"])
        attach_schedules(pools, schedules)
        return pools, int(total)

    def pragma(self, name: str) -> str:
        (value,) = self._conn.execute(f"PRAGMA {name}").fetchone()
        return str(value)

    def update_config(self, pool_id: str, config: dict[str, Any]) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        self._conn.execute(
            "UPDATE agent_pools SET k8s_config = ?, revision = revision + 1, "
            "updated_by = ?, updated_at = ? WHERE pool_id = ?",
            (json.dumps(config), "admin", now, pool_id),
        )
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


class RawPostgres:
    def __init__(self, url: str) -> None:
        self._conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(url)

    def select_all(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        with self._conn.cursor() as cur:
            cur.execute(f"SELECT {POOL_COLUMNS} FROM agent_pools ORDER BY name LIMIT %s", (limit,))
            pools = rows_as_dicts(cur)
            cur.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM freeze_schedules "
                "WHERE pool_id = ANY(%s) ORDER BY pool_id, position",
                ([p["pool_id"] for p in pools],),
            )
            schedules = rows_as_dicts(cur)
            cur.execute("SELECT count(*) FROM agent_pools")
            row = cur.fetchone()
        self._conn.commit()
        attach_schedules(pools, schedules)
        return pools, int(row[0]) if row else 0

    def update_config(self, pool_id: str, config: dict[str, Any]) -> None:
        self._conn.execute(
            "UPDATE agent_pools SET k8s_config = %s, revision = revision + 1, "
            "updated_by = %s, updated_at = now() WHERE pool_id = %s",
            (Jsonb(config), "admin", pool_id),
        )
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


def bench_raw(
    result: BackendResult, raw: RawSQLite | RawPostgres, ids: list[str], pools: int, scale: float
) -> None:
    base = seed_config()

    def raw_select(_: int) -> float:
        start = time.perf_counter_ns()
        items, total = raw.select_all(1000)
        text = json.dumps({"items": items, "total": total, "limit": 1000, "offset": 0}, default=str)
        took = elapsed_ms(start)
        if len(items) != min(pools, 1000) or total != pools or not text:
            raise RuntimeError(f"raw select: {len(items)} rows, total {total}")
        return took

    rng = random.Random(2000)

    def raw_update(i: int) -> float:
        pool_id = rng.choice(ids)
        config = stored_config(pool_config(base, 200_000 + i))
        start = time.perf_counter_ns()
        raw.update_config(pool_id, config)
        return elapsed_ms(start)

    result.stats["raw_select_1000"] = timed("raw_select_1000", raw_select, scale)
    result.stats["raw_update"] = timed("raw_update", raw_update, scale)


# -- one backend, start to finish --------------------------------------------------------------


def run_backend(backend: str, pools: int, scale: float) -> BackendResult:
    with (
        database(backend) as db,
        tempfile.TemporaryDirectory(prefix="slotpool-bench-") as tmp,
    ):
        result = BackendResult(backend, db)
        with api_client(db.url, Path(tmp)) as client:
            ids = bench_api(result, client, pools, scale)
            if backend == "sqlite":
                raw: RawSQLite | RawPostgres = RawSQLite(db.url.removeprefix("sqlite:///"))
                for pragma in ("journal_mode", "synchronous"):
                    db.settings[pragma] = raw.pragma(pragma)  # type: ignore[union-attr]
            else:
                raw = RawPostgres(db.url)
            try:
                bench_raw(result, raw, ids, pools, scale)
            finally:
                raw.close()
    result.notes.append(database_note(db))
    return result


def database_note(db: Database) -> str:
    s = db.settings
    if db.backend == "postgresql":
        return db.durability(" (config_put, raw_update, create)")
    synchronous = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}.get(
        s.get("synchronous", ""), s.get("synchronous", "?")
    )
    return (
        f"SQLite {s['version']}, file in a temporary directory, "
        f"journal_mode={s.get('journal_mode')}, synchronous={synchronous} (the server's own "
        "pragmas)."
    )
