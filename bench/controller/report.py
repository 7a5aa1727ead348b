"""The controller benchmark's report: the goals, then each part's tables, then the hand-written
findings of the previous report (kept below their marker when the report is rewritten)."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.controller.burst import QUEUED_SYNC_SECONDS, BurstResult, BurstRound
from bench.controller.common import BURST_CONFIG, GOALS, POOLS, RESYNC_CONFIG
from bench.controller.reaction import Reaction
from bench.controller.resync import ResyncResult
from bench.harness import cli
from bench.harness.cpu import cpu_count
from bench.harness.machine import Conditions, code_fingerprint, machine
from bench.harness.report import Cell, Paired, Report, started_line
from bench.harness.stats import ms_cells, quantile

FINDINGS_MARKER = "<!-- findings: kept from the previous report when it is rewritten -->"
LIBRARIES = (
    "lightkube", "lightkube-models", "httpx2", "anyio", "pydantic", "uvloop", "sqlalchemy",
    "psycopg", "fastapi", "uvicorn",
)  # fmt: skip


@dataclass
class Run:
    args: argparse.Namespace
    started: datetime
    conditions: Conditions
    seconds: float = 0.0
    reactions: list[Reaction] = field(default_factory=list)
    burst: BurstResult | None = None
    queued: BurstResult | None = None
    resync: list[ResyncResult] = field(default_factory=list)


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ratio(result: BurstResult, way: str) -> float:
    return Paired(result.of(way), result.of("direct")).ratio(lambda r: r.all_running)


def reaction_section(out: Report, run: Run) -> None:
    args, goal = run.args, GOALS["reaction_ms"]
    out.heading("1. Scale-up reaction (fake runtime)").para(
        f"A k8s pool with `slots_per_pod=1`, `min_replicas=0`, `max_replicas=1000` on SQLite; "
        f"{args.warmups} unmeasured tasks, then {args.samples} tasks submitted one after the other "
        "(the next once the previous one's Pod was created). Every Pod reports `Running` but no "
        "agent registers, so each task needs a new Pod and the pool grows to "
        f"{args.warmups + args.samples} Pods. Time from the POST to `create_agent` being called "
        "(`time.perf_counter()` in the fake runtime; the server runs in a thread of this process). "
        "The runtime is handed to the app (`create_app(settings, runtimes=...)`)."
    )
    rows: list[list[Cell]] = []
    for r in run.reactions:
        ok = bool(r.after_return_ms) and quantile(r.after_return_ms, 99) < goal
        rows += [
            [f"{r.resync:g}", "POST answered", len(r.after_return_ms),
             *ms_cells(r.after_return_ms), f"p99 < {goal:.0f} ms: {met(ok)}"],
            [f"{r.resync:g}", "POST sent", len(r.after_send_ms), *ms_cells(r.after_send_ms), ""],
            [f"{r.resync:g}", "(the POST itself)", len(r.post_ms), *ms_cells(r.post_ms), ""],
        ]  # fmt: skip
    header = ["`pod_sync_seconds`", "from", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "goal"]
    out.table(header, rows, align="rlrrrrrl")
    out.para("As the pool grows (POST answered to `create_agent`, ms):")
    growing: list[list[Cell]] = []
    for r in run.reactions:
        n = len(r.after_return_ms)
        for lo, hi in ((0, n // 4), (n // 4, n // 2), (n // 2, 3 * n // 4), (3 * n // 4, n)):
            if hi > lo:
                pods = f"{lo + args.warmups}-{hi - 1 + args.warmups}"
                growing.append([f"{r.resync:g}", pods, *ms_cells(r.after_return_ms[lo:hi])])
    header = ["`pod_sync_seconds`", "Pods before the task", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    out.table(header, growing, align="rlrrrr")
    out.bullets(
        f"`pod_sync_seconds={r.resync:g}`: a pool created through the API while the server "
        "runs, one task submitted at once: first `create_agent` after **"
        + ("no create within the wait" if r.new_pool_ms is None else f"{r.new_pool_ms:.0f} ms")
        + f"**{f', {r.timeouts} samples timed out' if r.timeouts else ''}. Other processes used "
        f"{r.others_cpu:.1f} CPU-s during this part ({r.seconds:.0f} s)."
        for r in run.reactions
    )


Metric = tuple[str, Callable[[BurstRound], float]]


def paired_rows(result: BurstResult, way: str, metrics: list[Metric]) -> list[list[Cell]]:
    """The ``way`` against ``direct``, measure by measure."""
    paired = Paired(result.of(way), result.of("direct"))
    return [paired.row(name, value, strong=name.startswith("time to all"))
            for name, value in metrics]  # fmt: skip


def paired_header(way: str) -> list[str]:
    return ["measure", way, "direct", f"{way} / direct", "paired rounds"]


def common_metrics(result: BurstResult) -> list[Metric]:
    return [
        ("to the first Pod created (s)", lambda r: r.first_added),
        (f"to the {result.pods}th Pod created (s)", lambda r: r.last_added),
        ("process CPU (server + bench) (s)", lambda r: r.process_cpu),
        ("cluster CPU (s)", lambda r: r.usage.named_total),
        ("others' CPU (s)", lambda r: r.usage.others),
    ]


def burst_section(out: Report, run: Run, result: BurstResult) -> None:
    args = run.args
    found = ratio(result, "controller")
    out.heading("2. Burst on the test cluster").bullets(
        [
            f"Cluster: `tests/support/kube.py` (Kubernetes {result.server_version}, kwok), "
            f"started in {result.cluster_start_s:.0f} s; Nodes: "
            f"{'; '.join(result.node_pods_capacity)}.",
            "controller: the server as its own process (`tests/support/server.py` "
            "`ServerProcess`: `python -m slotpool.cli server`, SQLite, `pod_sync_seconds=1`, "
            f"`kube_requests_per_second={args.rate:g}`), a new empty pool per round "
            f"(`{json.dumps(BURST_CONFIG)}`), its first controller pass awaited (its token Secret "
            f"exists), then {args.tasks} tasks POSTed at once over {args.connections} keep-alive "
            "connections (one `httpx.AsyncClient`, in the bench's main thread). Clock: first "
            f"POST to the {args.pods}th Pod of the pool `Running`.",
            f"direct: {args.pods} Pods from the same builder, `await bucket.acquire(); await "
            "client.create(pod)` (`bench.harness.cluster.creator`: the runtime's `TokenBucket` "
            f"at {args.rate:g}/s, one lightkube `AsyncClient`, `Pod` objects built beforehand), "
            f"all at once. Clock: first create to the {args.pods}th Pod `Running`.",
            f"{args.rounds} rounds per way, alternating (A B, B A, ...), after one warm-up each; "
            "the pool is deleted and every Pod deleted (grace 0) and gone between rounds. "
            "`Running` and creation times come from a watch in its own thread.",
        ]
    )
    out.para(
        f"**Time to {args.pods} Pods Running, controller / direct: {found:.2f}** "
        f"(goal at most {GOALS['burst_ratio']:.2f}: {met(found <= GOALS['burst_ratio'])})."
    )
    metrics: list[Metric] = [
        ("time to all Running (s)", lambda r: r.all_running),
        ("last POST answered to all Running (s; direct: = all Running)",
         lambda r: r.all_running - r.submit_wall),
        *common_metrics(result),
    ]  # fmt: skip
    submit = statistics.median(r.submit_wall for r in result.of("controller"))
    rows = paired_rows(result, "controller", metrics)
    rows.append([f"{result.tasks} POSTs answered (s)", f"{submit:.3f}", "-", "-", "-"])
    out.table(paired_header("controller"), rows)
    if static := result.of("static"):
        alone = statistics.median(r.submit_wall for r in static)
        cpu = statistics.median(r.process_cpu for r in static)
        others = statistics.median(r.usage.others for r in static)
        out.para(
            f"The same {result.tasks} POSTs into a **static** pool of the same server (no "
            f"controller pass; median of {len(static)} rounds run between the others): answered "
            f"after **{alone:.3f} s** ({result.tasks / alone:.0f} tasks/s; process CPU {cpu:.2f} "
            f"s, others' CPU {others:.2f} s), against {submit:.3f} s "
            f"({result.tasks / submit:.0f} tasks/s) into the k8s pool."
        )
    out.table(
        ["#", "way", "round", "all Running s", "first Pod s", "last Pod created s", "POSTs done s",
         "Pods", "process CPU s", "cluster CPU s", "others' CPU s"],
        [[step, r.way, r.index, f"{r.all_running:.3f}", f"{r.first_added:.3f}",
          f"{r.last_added:.3f}", f"{r.submit_wall:.3f}", r.pods_created, f"{r.process_cpu:.2f}",
          f"{r.usage.named_total:.2f}", f"{r.usage.others:.2f}"]
         for step, r in enumerate(result.rounds, start=1)],
        align="rlrrrrrrrrr",
    )  # fmt: skip
    counts = [r.pods_created for r in result.of("controller")]
    storms = sum(1 for n in counts if n != args.pods)
    out.para(
        f"Pods created per controller round (a scale-up storm would exceed {args.pods}): "
        f"{', '.join(map(str, counts))}"
        + (f"; rounds off the count: {storms}" if storms else "")
        + "."
    )
    passes_section(out, result)


def passes_section(out: Report, result: BurstResult) -> None:
    if ctl := result.of("controller"):
        out.para(
            "The controller's creating passes, from the pool's events (median round; the "
            "event is written at the end of its pass, seconds after the first POST):"
        )
        median_round = sorted(ctl, key=lambda r: r.all_running)[len(ctl) // 2]
        out.table(
            ["pass", "event at s", "queued seen", "Pods created"],
            [[i, f"{p['at']:.3f}", p["queued"], p["created"]]
             for i, p in enumerate(median_round.passes, start=1)],
            align="rrrr",
        )  # fmt: skip
    if (inst := result.instrumented) is not None:
        out.heading("Where the time goes (one more controller round, instrumented)", 3).para(
            f"The controller's steps and the request handlers around them, wrapped to record "
            f"their wall time (awaits included; this round: POSTs answered after "
            f"{inst.submit_wall:.3f} s, all Running after {inst.all_running:.3f} s):"
        )
        out.table(
            ["step", "calls", "total s", "mean ms", "max ms"],
            [[f"`{name}`", len(v), f"{sum(v):.3f}", f"{statistics.mean(v) * 1000:.1f}",
              f"{max(v) * 1000:.1f}"]
             for name, v in sorted(inst.calls.items(), key=lambda kv: -sum(kv[1]))],
        )  # fmt: skip
        out.para("Its passes (seconds from the first POST; act = creating and deleting):")
        nan = float("nan")
        out.table(
            ["pass", "start s", "end s", "queued seen", "capacity Pods", "created", "act s"],
            [[i, f"{p['pass_start']:.3f}", f"{p['pass_end']:.3f}", f"{p.get('queued', nan):.0f}",
              f"{p.get('capacity', nan):.0f}", f"{p.get('created', 0):.0f}",
              f"{p.get('act_end', 0.0) - p.get('act_start', 0.0):.3f}"]
             for i, p in enumerate(inst.passes, start=1)],
            align="rrrrrrr",
        )  # fmt: skip
    if result.profile:
        out.heading("Profile (one more controller round, cProfile in the server's thread)", 3)
        out.profile(
            f"All Running after {result.profiled_all_running:.3f} s under the profiler. "
            "slotpool's functions by cumulative time (a coroutine's time adds up its steps, not "
            "its waits):",
            result.profile_own,
            result.profile,
        )


def queued_section(out: Report, run: Run, result: BurstResult) -> None:
    args = run.args
    found = ratio(result, "queued")
    out.heading(
        "2b. Burst from a queue filled beforehand (test cluster, one `sync-deployment`)"
    ).bullets(
        [
            f"Cluster: as in part 2 (Kubernetes {result.server_version}, kwok; a cluster of its "
            f"own, started in {result.cluster_start_s:.0f} s).",
            f"queued: an in-process server as in part 2 but with `pod_sync_seconds="
            f"{QUEUED_SYNC_SECONDS:g}` (no periodic pass; a queued task wakes the controller only "
            f"through the server's own notifier), a new empty pool per round, its first pass "
            f"awaited (token Secret) and one `sync-deployment` with the queue empty (0 Pods). "
            f"Then {args.tasks} tasks shaped as `TaskService.submit` builds them are inserted in "
            "ONE transaction by the bench's own `Store` on the server's SQLite file (the server "
            "is not notified), and it is checked that they are queued, that the API server lists "
            "no Pod of the pool, the watch saw none and the pool has no `create_pods` event. "
            f"Clock: one `POST {POOLS}/{{id}}/sync-deployment` (a controller pass at once) to the "
            f"{args.pods}th Pod of the pool `Running`.",
            f"direct: as in part 2 ({args.pods} bare Pods, the same `TokenBucket` at "
            f"{args.rate:g}/s). {args.rounds} rounds per way, alternating, after one warm-up each.",
        ]
    )
    out.para(
        f"**Time to {args.pods} Pods Running, queued controller / direct: {found:.2f}** "
        f"(goal at most {GOALS['burst_ratio']:.2f}: {met(found <= GOALS['burst_ratio'])})."
    )
    metrics: list[Metric] = [("time to all Running (s)", lambda r: r.all_running)]
    sync = statistics.median(r.submit_wall for r in result.of("queued"))
    insert = statistics.median(r.insert_s for r in result.of("queued"))
    rows = paired_rows(result, "queued", [*metrics, *common_metrics(result)])
    rows += [
        ["the `sync-deployment` answered (s)", f"{sync:.3f}", "-", "-", "-"],
        [f"(not timed) inserting the {result.tasks} tasks, one transaction (s)",
         f"{insert:.3f}", "-", "-", "-"],
    ]  # fmt: skip
    out.table(paired_header("queued"), rows)
    out.table(
        ["#", "way", "round", "all Running s", "first Pod s", "last Pod created s",
         "sync answered s", "Pods", "created by the sync's pass", "creating passes (Pods each)",
         "events", "process CPU s", "cluster CPU s", "others' CPU s"],
        [queued_row(step, r) for step, r in enumerate(result.rounds, start=1)],
        align="rlrrrrrrrllrrr",
    )  # fmt: skip


def queued_row(step: int, r: BurstRound) -> list[str | int]:
    queued = r.way == "queued"
    creating = f"{len(r.passes)} ({', '.join(str(p['created']) for p in r.passes)})"
    return [
        step, r.way, r.index, f"{r.all_running:.3f}", f"{r.first_added:.3f}",
        f"{r.last_added:.3f}", f"{r.submit_wall:.3f}" if queued else "-", r.pods_created,
        r.sync_created if queued else "-", creating if queued else "-",
        ", ".join(f"{k} {v}" for k, v in sorted(r.actions.items())) or "-",
        f"{r.process_cpu:.2f}", f"{r.usage.named_total:.2f}", f"{r.usage.others:.2f}",
    ]  # fmt: skip


def resync_section(out: Report, run: Run) -> None:
    args = run.args
    out.heading("3. Resync pass over many pools (fake runtime, no server)").para(
        f"{args.pools} k8s pools (`{json.dumps(RESYNC_CONFIG)}`), each with "
        f"{args.pods_per_pool} Pods as their agents' `register` leaves them (ready, idle slots; "
        "written with multi-row INSERTs to keep seeding short) that the fake runtime reports "
        "`Running` with the pool's config hash, and the pool's token in the fake Secret. A "
        "pass is `reconcile(pool, check_secret=False)` for every pool, one after the other "
        "unless batched; the baseline is one `uow.pods.of_pool(pool_id)` per pool, each in its "
        "own reading unit of work (`store.reading()`: no transaction, the cheapest there is). "
        "On PostgreSQL a settled pool's pass reads without the pool's lock in the database and "
        "takes it only to act (`Reconciler._look`). CPU = `time.process_time()` of this "
        "process (all its threads) + PostgreSQL's server processes. RSS peak = `VmHWM` after "
        "resetting it; tracemalloc runs only in the passes that say so (it slows them)."
    )
    for result in run.resync:
        base, steady = result.get("of_pool read (baseline)"), result.get("reconcile, steady pass")
        out.heading(result.database, 3).para(
            f"Seeding ({result.pools} pools, {result.pools * result.pods_per_pool} Pods, "
            f"tokens): {result.seed_seconds:.1f} s."
        )
        out.table(
            ["measure", "wall s", "ms per pool", "CPU s (this process + database)",
             "CPU ms per pool", "/ baseline (ms per pool)", "RSS before -> after MiB",
             "RSS peak MiB", "tracemalloc peak MiB", "Secret reads", "errors", "Pods changed"],
            [[m.name, f"{m.wall:.2f}", f"{m.per_ms:.2f}", f"{m.cpu:.2f} + {m.db_cpu:.2f}",
              f"{m.cpu_per_ms:.2f}", f"{m.per_ms / base.per_ms:.2f}",
              f"{m.rss_before_mb:.0f} -> {m.rss_after_mb:.0f}", f"{m.rss_peak_mb:.0f}",
              "-" if m.traced_peak_mb is None else f"{m.traced_peak_mb:.1f}", m.token_reads,
              m.errors, m.writes]
             for m in result.measures],
            align="lrrrrrlrrrrr",
        )  # fmt: skip
        cpu = steady.cpu + steady.db_cpu
        out.para(
            f"Steady pass / baseline: **{steady.wall / base.wall:.2f}** (wall), "
            f"{steady.cpu_per_ms / base.cpu_per_ms:.2f} (CPU). One pass over all "
            f"{result.pools} pools costs {cpu:.1f} CPU-s: with `pod_sync_seconds=1` every pool's "
            f"worker asks for a pass every second, i.e. about {cpu:.0f} CPUs; one process gets "
            f"through all pools only every {steady.wall:.0f} s or so, busy all the time."
        )
        if result.history:
            out.para(
                f"One pool with {result.pods_per_pool} live Pods and N ended Pods' rows "
                f"(median of {args.history_runs}):"
            ).table(
                ["ended Pods (rows)", "pass ms", "of_pool ms"],
                [[n, f"{p:.1f}", f"{r:.1f}"] for n, p, r in result.history],
                align="rrr",
            )


def goal_rows(run: Run) -> list[list[str]]:
    rows, goal = [], GOALS["burst_ratio"]
    for r in run.reactions:
        if r.after_return_ms:
            p50, p99 = quantile(r.after_return_ms, 50), quantile(r.after_return_ms, 99)
            rows.append(
                [f"scale-up reaction, `pod_sync_seconds={r.resync:g}` (POST answered to "
                 f"`create_agent`)", f"under {GOALS['reaction_ms']:.0f} ms",
                 f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", met(p99 < GOALS["reaction_ms"])]
            )  # fmt: skip
    if run.burst is not None:
        found = ratio(run.burst, "controller")
        rows.append(
            [f"burst: time to {run.burst.pods} Running, controller / direct",
             f"at most {goal:.2f}", f"{found:.2f}", met(found <= goal)]
        )  # fmt: skip
    if run.queued is not None:
        found = ratio(run.queued, "queued")
        rows.append(
            [f"burst, {run.queued.tasks} tasks queued beforehand, one `sync-deployment`: time to "
             f"{run.queued.pods} Running, controller / direct", f"at most {goal:.2f}",
             f"{found:.2f}", met(found <= goal)]
        )  # fmt: skip
    for result in run.resync:
        base, steady = result.get("of_pool read (baseline)"), result.get("reconcile, steady pass")
        rows.append(
            [f"resync pass, {result.backend}: per pool / `of_pool` read", "(none set)",
             f"{steady.per_ms:.2f} ms / {base.per_ms:.2f} ms = {steady.wall / base.wall:.2f}", ""]
        )  # fmt: skip
    return rows


def report(run: Run, findings: str) -> str:
    out = Report("slotpool pool controller benchmark").bullets(
        [
            started_line(run.started, run.seconds),
            f"Command: `{cli.command('controller')}`",
            f"Code: {code_fingerprint()}",
            "Parts: " + ", ".join(run.args.parts),
        ]
    )
    out.machine(machine(LIBRARIES, sqlite=True), run.conditions).para(
        f"The machine has {cpu_count()} CPUs for the benchmark, the test cluster and other "
        "engineers' test runs, which went on during this run: absolute numbers are noisy; "
        "compare the ratios against their baselines from the same run."
    )
    out.heading("Goals").table(["measure", "goal", "result", ""], goal_rows(run), align="llrl")
    if run.reactions:
        reaction_section(out, run)
    if run.burst is not None:
        burst_section(out, run, run.burst)
    if run.queued is not None:
        queued_section(out, run, run.queued)
    if run.resync:
        resync_section(out, run)
    if findings:
        out.para(findings.rstrip())
    return out.text()


def kept_findings(path: Path) -> str:
    """The hand-written analysis at the end of the previous report, kept across reruns."""
    with contextlib.suppress(OSError):
        text = path.read_text()
        if FINDINGS_MARKER in text:
            return FINDINGS_MARKER + text.split(FINDINGS_MARKER, 1)[1]
    return ""
