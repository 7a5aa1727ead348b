"""The REST API benchmark's report: per backend its figures, the ratios to the floors, and
what they say (with a breakdown found once, not re-measured by each run)."""

from __future__ import annotations

from datetime import datetime

from bench.api.measure import DESCRIPTIONS, RATIOS, ROW_ORDER, RUNS, SEEDING, BackendResult
from bench.harness import cli
from bench.harness.machine import Conditions, machine
from bench.harness.report import Report, started_line

# -- the report --------------------------------------------------------------------------------


def stats_rows(result: BackendResult) -> list[list[str | int]]:
    return [
        [name, s.n, *(f"{v:.2f}" for v in (s.p50, s.p90, s.p99, s.mean, s.minimum, s.maximum))]
        for name in (*ROW_ORDER, SEEDING)
        if (s := result.stats.get(name)) is not None
    ]


def ratio_rows(results: list[BackendResult]) -> list[list[str]]:
    return [[f"{a} / {b}", *(f"{r.ratio(a, b):.1f}x" for r in results)] for a, b in RATIOS]


def interpretation(results: list[BackendResult], pools: int) -> list[str]:
    found = []
    for r in results:
        s = r.stats
        per_pool_us = (s["list_1000"].p50 - s["healthz"].p50) * 1000 / min(pools, 1000)
        raw_share = s["raw_select_1000"].p50 / s["list_1000"].p50 * 100
        put_extra = s["config_put"].p50 - s["healthz"].p50 - s["raw_update"].p50
        found.append(
            f"**{r.backend}**: `list_1000` takes {s['list_1000'].p50:.1f} ms at the median "
            f"({r.list_bytes / 1024:.0f} KiB of JSON), about {per_pool_us:.0f} us per pool above "
            f"the HTTP floor. Reading the same rows with the bare driver and dumping them as JSON "
            f"takes {s['raw_select_1000'].p50:.1f} ms, {raw_share:.0f}% of that: the rest is the "
            "API's own work per pool, plus carrying the bigger document over HTTP. "
            f"`config_put` takes {s['config_put'].p50:.2f} ms, of which the HTTP floor is "
            f"{s['healthz'].p50:.2f} ms and one bare UPDATE + COMMIT {s['raw_update'].p50:.2f} ms;"
            f" the remaining {put_extra:.2f} ms are the API's own work."
        )
    return found


def report(
    results: list[BackendResult], *, pools: int, started: datetime, seconds: float,
    conditions: Conditions,
) -> str:  # fmt: skip
    info = machine(
        ("fastapi", "starlette", "pydantic", "sqlalchemy", "uvicorn", "httpx", "psycopg",
         "uvloop", "httptools", "orjson"),
        sqlite=True,
    )  # fmt: skip
    info["CPU check"] = conditions.check_row(
        " (compare between runs: a slower host shows here first)"
    )
    for r in results:
        if r.backend == "postgresql":
            info["PostgreSQL server"] = r.database.settings.get("server_version", "?")
    out = Report("slotpool REST API benchmark").bullets(
        [
            started_line(started, seconds),
            f"Command: `{cli.command('api')}`",
            f"Data: {pools:,} pools, each with a `SEED_RIGHT`-like `k8s_config` (image, env, "
            "limits, replicas) and one freeze window; distinct names and images.",
            "Client: one warm keep-alive `httpx.Client` in the benchmark process; server: "
            "`slotpool server` (uvicorn, one worker) in its own process, on 127.0.0.1. Client, "
            "server and database share the same CPUs.",
            "Times are wall-clock per request as seen by the client (the body read in full, "
            "JSON parsing and checks excluded), in milliseconds. The p99 of a benchmark with 50 "
            'runs is close to its maximum: read it as "the worst few".',
        ]
    )
    out.heading("Machine").facts(info).heading("Benchmarks")
    runs: list[list[str | int]] = [
        [name, DESCRIPTIONS[name], RUNS.get(name, (0, 0))[0],
         f"{results[0].stats[name].n if results and name in results[0].stats else pools:,}"]
        for name in (*ROW_ORDER, SEEDING)
    ]  # fmt: skip
    out.table(["benchmark", "what", "warm-ups", "runs"], runs, align="llrr")
    header = ["benchmark", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms", "min ms", "max ms"]
    for r in results:
        out.heading(r.backend).table(header, stats_rows(r))
        out.bullets([*r.notes, f"Seeding {pools:,} pools took {r.seed_seconds:.1f} s."])
    out.heading("Ratios").table(
        ["ratio of p50s", *(r.backend for r in results)], ratio_rows(results)
    )
    out.drift(conditions, "the two backends")
    out.heading("Interpretation").para("What this run measured:")
    out.bullets(interpretation(results, pools)).raw(WHERE_THE_TIME_GOES)
    return out.text()


WHERE_THE_TIME_GOES = [
    "Where the time goes. This part is not re-measured by each run: it comes from a one-off "
    "in-process breakdown of the two handlers (same 1,000 pools, 2026-11-23), so check it "
    "against the code before relying on it.",
    "",
    "* `list_1000` (about 230-270 ms in-process, on either database): no single step "
    "dominates; it is roughly 200 us of Python per pool. By stage, with the garbage collector's "
    "pauses counted where they fall: SQLAlchemy loading the 1,000 pool rows and their 1,000 "
    "window rows into ORM objects and decoding their JSON columns, about 75 ms (the SQL itself "
    "is a few ms); turning each row back into the domain `Pool`, 40-65 ms, which re-runs the "
    "full pydantic validation of `PoolConfig` (image and name checks, resource quantities "
    "parsed with `Fraction`) and of each `FreezeSchedule` on data that was validated when it "
    "was saved; `pool_out` per pool, 40-50 ms: `config_hash` (a `model_dump`, canonical JSON "
    "and SHA-256 of every pool on every request, about 15 ms), the freeze state (time-zone "
    "arithmetic, about 7 ms) and the nested `PoolOut` models; FastAPI serialising the ~800 KiB "
    "response, about 10 ms. Across those stages Python's cyclic garbage collector takes about "
    "80 ms per request (measured with `gc.callbacks`: about 85 young, 8 middle and 0.7 full "
    "collections per request), a third of the total: at the default threshold of 700 that is "
    "some 60,000 new container objects per request, while over 100,000 long-lived ones are "
    "tracked and walked by each full collection; that is also why `list_1000` swings between "
    "~130 ms and ~330 ms from one request to the next. "
    "The HTTP floor was under 1 ms then (uvicorn with its pure-Python h11 parser and the "
    "asyncio loop; httptools and uvloop are installed since).",
    "* `config_put`: when this was measured, one change ran 11 SQL statements: the pool row "
    "and its windows were loaded four times in one transaction (the session holds rows weakly "
    "and the repository kept none), about 60% of the handler's time; and a window sent without "
    "an `id` got a new id (a DELETE and an INSERT) on every PUT. Both were fixed the same day: "
    "the same PUT now runs 3 statements (SELECT pool, SELECT windows, UPDATE; counted with an "
    "SQLAlchemy cursor event, which, unlike a time, does not move with the machine's load), "
    "and a window equal to a stored one keeps its id.",
    "* The garbage collector's share of `list_1000` (above) was tried against: freezing the "
    "long-lived objects and raising the collection threshold, interleaved with CPython's "
    "defaults over 10 rounds in one process, gave 186 ms against 188 ms at the median, so "
    "the server keeps CPython's defaults.",
    "* SQLite versus PostgreSQL: SQLite's bare commit is tens of microseconds (WAL, "
    "synchronous=NORMAL: no fsync per commit), yet `config_put` is no faster on SQLite: the "
    "time is the server's Python (SQLAlchemy's ORM, the request stack), not the database. "
    "(Until 2026-12-02 every statement also crossed aiosqlite's worker thread four times, "
    "and until 2026-12-03 a greenlet of SQLAlchemy's asyncio extension; the sessions now "
    "make their calls at once in the event loop's thread, `store/inline_sqlite.py`.) So "
    "`config_put / raw_update` is very large on SQLite: it says mostly how cheap that floor is; "
    "`config_put / healthz` is the better number to compare. With the test server's "
    "fsync=off (see the PostgreSQL notes above) PostgreSQL's write numbers are optimistic; on "
    "a durable server add one WAL flush per commit to `config_put`, `raw_update` and `create`.",
]
