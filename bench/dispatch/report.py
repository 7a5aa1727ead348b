"""The dispatch benchmark's report: goals, baselines, each backend's phases with what every
process used, the ratios, and what the numbers say (with the mechanisms found behind them once,
not re-measured by each run)."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from bench.dispatch.measure import (
    AGENTS,
    CLAIM_WAIT_SECONDS,
    DATE_COMMAND,
    DRAIN_TIMEOUT,
    PG_COUNTERS,
    PODS,
    SLOTS_PER_POD,
    STALL_SECONDS,
    BackendResult,
    Baselines,
    LatencyPhase,
    Sample,
    Throughput,
    Usage,
)
from bench.harness import cli
from bench.harness.cpu import cpu_count
from bench.harness.machine import Conditions, machine
from bench.harness.pyspy import SampledProfile, relative
from bench.harness.report import STATS_HEADER, Report, started_line, stats_rows
from bench.harness.stats import Stats

GOALS = {"p50_ms": 50.0, "p99_ms": 200.0, "per_second": 300.0, "cpu_ms": 4.0, "post_ms": 3.0}
POST = "POST /api/v1/tasks round trip"
PROFILE_TOP = 15
SLOTPOOL_LAYERS = ("api/routes", "services", "store", "domain", "controller")  # not the entry
CLIENT = "submit to step start (client)"
SAMPLE_HEADER = (
    "#", "warm-up", "status", "pod/slot", "submit to step start ms", "server: to delivery ms",
    "agent: delivery to start ms", "POST ms",
)  # fmt: skip


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def stats_table(out: Report, stats: list[Stats]) -> None:
    out.table(["measure", *STATS_HEADER], stats_rows(stats))


def sample_rows(samples: list[Sample]) -> list[list[str | int]]:
    return [
        [s.index, "yes" if s.warmup else "no", s.status, f"`{s.where}`", fmt(s.latency_ms),
         fmt(s.server_ms), fmt(s.agent_ms), f"{s.post_ms:.1f}"]
        for s in samples
    ]  # fmt: skip


def usage_table(out: Report, usage: Usage, tasks: float, per: str = "task") -> None:
    """CPU per process (and PostgreSQL's counters) over ``usage``, in all and per ``per``."""
    capacity = usage.seconds * cpu_count()
    rows: list[list[str]] = []
    for name, seconds in [*usage.cpu.items(), ("all of the above", sum(usage.cpu.values()))]:
        rows.append(
            [f"CPU: {name}", f"{seconds:.2f} s", f"{seconds / capacity * 100:.0f}%",
             f"{seconds / tasks * 1000:.1f} ms"]
        )  # fmt: skip
    others = usage.others()
    rows.append(
        ["CPU: other processes on this machine", f"{others:.2f} s",
         f"{others / capacity * 100:.0f}%", ""]
    )  # fmt: skip
    for name in PG_COUNTERS if usage.db else ():
        value = usage.db.get(name, 0.0)
        rows.append([f"PostgreSQL `{name}`", f"{value:,.0f}", "", f"{value / tasks:.1f}"])
    header = [
        f"over {usage.seconds:.1f} s of wall time ({capacity:.1f} CPU-seconds on {cpu_count()} "
        "CPUs)", "in all", "share of the CPUs", f"per {per}",
    ]  # fmt: skip
    out.table(header, rows)


def phase_section(out: Report, phase: LatencyPhase) -> None:
    out.heading(phase.name, 3)
    if phase.setup:
        out.para(f"Setup: {phase.setup}.")
    measured = phase.measured()
    out.para(
        f"{len(phase.samples)} tasks in {phase.seconds:.1f} s "
        f"({min(len(phase.samples), phase.warmups)} warm-ups, {len(measured)} measured); "
        f"{phase.stalls} stalled (step started more than {STALL_SECONDS:g} s after the "
        f"submission); {len(phase.failures())} did not succeed."
        + (f" **{phase.stopped}.**" if phase.stopped else "")
    )
    odd = [s for s in phase.samples if s.stalled or s.status != "succeeded"]
    if odd and not phase.stopped:
        out.para("Tasks that stalled or did not succeed:").table(SAMPLE_HEADER, sample_rows(odd))
    out.bullets(f"`{s.task_id}` ended {s.status}: {s.reason or '(no reason)'}"
                for s in phase.failures())  # fmt: skip
    if stats := phase.stats():
        stats_table(out, list(stats.values()))
    if phase.usage is not None:
        out.para(
            f"Resources used during the {len(measured)} measured tasks (one at a time, so this"
            " is the cost of one task, with the server's own background passes and, in the one"
            " idle slot phase, the held tasks' shells included):"
        )
        usage_table(out, phase.usage, len(measured))
    if phase.stopped or len(measured) < 2:
        out.para("Every task of this phase:").table(SAMPLE_HEADER, sample_rows(phase.samples))


def throughput_section(out: Report, t: Throughput) -> None:
    out.heading("throughput", 3).para(
        f"{t.tasks} tasks of `true`, submitted from {t.concurrency} client threads (one "
        "keep-alive connection each)."
    )
    completions = (
        f"**{t.completion_rate:,.1f} tasks/s** ({t.last_finish - t.first_submit:.2f} s from the "
        "first submission to the last `finished_at`)"
        if t.drained
        else f"not all tasks ended within {DRAIN_TIMEOUT:g} s"
    )
    out.facts(
        {
            "accepted": f"{t.submitted} of {t.tasks} ({len(t.submit_errors)} refused or failed)",
            "submission rate (the ceiling)": f"{t.submit_rate:,.1f} tasks/s "
            f"({t.last_accepted - t.first_submit:.2f} s for all POSTs)",
            "completions per second": completions,
            "final states": ", ".join(f"{k}: {v}" for k, v in sorted(t.statuses.items())),
            "finished, seconds after the first submission": ", ".join(
                f"{k}: {v:.2f} s" for k, v in t.finish_after.items()
            ),
            f"a freed slot given to a waiting task more than {STALL_SECONDS:g} s later": (
                f"{len(t.slow_handoffs)} of {t.handoff.n if t.handoff else 0} hand-overs"
            ),
        }
    )
    stats_table(out, [s for s in (t.post, t.dispatch_wait, t.run_and_report, t.handoff) if s])
    if t.usage is not None:
        out.para(f"Resources used while the {t.tasks} tasks were submitted and run:")
        usage_table(out, t.usage, t.tasks)
    if problems := [*t.submit_errors[:5], *t.not_succeeded[:10], *t.slow_handoffs[:10]]:
        out.para("Tasks that did not go as they should:").bullets(problems)
    if t.profile is not None:
        profile_section(out, t.profile)


def profile_section(out: Report, profile: SampledProfile) -> None:
    """The server's py-spy profile of the throughput run: where it is, and its top functions."""
    out.heading("where the server's time went (py-spy)", 4)
    if profile.error:
        out.para(f"No profile: {profile.error}")
        return
    out.para(
        "The server process sampled by py-spy (`--nonblocking --gil`: only samples holding the"
        " interpreter lock, i.e. the server's Python work; SQLite's own C work, which runs with"
        " the lock released, is not in it) from the first submission until every task had ended: "
        f"{profile.samples:,.1f} {profile.unit} sampled, in "
        f"`{relative(profile.path)}` (speedscope: open it at speedscope.app). Own = the "
        "function was on top of the stack (its own code, or a C function it called); in all = "
        "anywhere on the stack."
    )

    def rows(key: str, shown: list[str] | None = None) -> list[list[str]]:
        found = [f for f in profile.functions if shown is None or any(s in f.name for s in shown)]
        top = sorted(found, key=lambda f: -getattr(f, key))[:PROFILE_TOP]
        return [
            [f"`{f.name}`", f"{f.own / profile.samples:.1%}", f"{f.total / profile.samples:.1%}"]
            for f in top
        ]

    header = ["function", "own", "in all"]
    out.para("Top functions by own samples:").table(header, rows("own"))
    out.para("slotpool's request handlers, use cases and repositories by samples in all:").table(
        header, rows("total", [f"slotpool/{layer}/" for layer in SLOTPOOL_LAYERS])
    )


def latency_cell(phase: LatencyPhase | None, attr: str) -> str:
    if phase is None:
        return "-"
    stats = phase.stats().get(CLIENT)
    if stats is None:
        stalled = next((s for s in phase.samples if s.stalled), None)
        if stalled is not None:
            return (
                f"**missed**: task {stalled.index + 1} waited {fmt(stalled.latency_ms, 0)} ms"
                f" (the 1st: {fmt(phase.samples[0].latency_ms)} ms); phase stopped"
            )
        return "not measured"
    value = float(getattr(stats, attr))
    return f"{value:,.1f} ms ({'reached' if value <= GOALS[f'{attr}_ms'] else 'missed'})"


def goal_rows(results: list[BackendResult]) -> list[list[str]]:
    rows = []
    for label, attr in (("p50 <= 50 ms", "p50"), ("p99 <= 200 ms", "p99")):
        for phase_name in ("plain", "one idle slot"):
            cells = [latency_cell(r.plain if phase_name == "plain" else r.held, attr)
                     for r in results]  # fmt: skip
            rows.append([f"latency {label}, {phase_name}", *cells])
    cells = []
    for r in results:
        t = r.throughput
        if t is None or not t.drained:
            cells.append("-")
        else:
            reached = t.completion_rate >= GOALS["per_second"]
            cells.append(f"{t.completion_rate:,.1f}/s ({'reached' if reached else 'missed'})")
    return [
        *rows,
        [">= 300 completions/s", *cells],
        ["server CPU per completed short task <= 4 ms (throughput)",
         *(server_cpu_cell(r.throughput) for r in results)],
        ["`POST /api/v1/tasks` round trip p50 <= 3 ms (plain; `GET /healthz` p50 of the same "
         "run)", *(post_cell(r) for r in results)],
    ]  # fmt: skip


def server_cpu_cell(t: Throughput | None) -> str:
    """The server process's CPU (user and kernel) over the throughput run, per task."""
    if t is None or t.usage is None or not t.drained:
        return "-"
    per_task = t.usage.server_cpu() / t.tasks * 1000
    return f"{per_task:,.1f} ms ({'reached' if per_task <= GOALS['cpu_ms'] else 'missed'})"


def post_cell(r: BackendResult) -> str:
    post = p50(r.plain, POST)
    if post is None or r.healthz is None:
        return "-"
    reached = "reached" if post <= GOALS["post_ms"] else "missed"
    return f"{post:,.2f} ms vs {r.healthz.p50:,.2f} ms ({post / r.healthz.p50:,.1f}x; {reached})"


def p50(phase: LatencyPhase | None, name: str) -> float | None:
    stats = phase.stats().get(name) if phase else None
    return stats.p50 if stats else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def ratio_rows(results: list[BackendResult], base: Baselines) -> list[list[str]]:
    shell = base.exec_shell.p50
    rows: list[tuple[str, Callable[[BackendResult], float | None]]] = [
        ("one idle slot: submit to step start / `sh -c date` spawn to clock read",
         lambda r: ratio(p50(r.held, CLIENT), shell)),
        ("one idle slot: submit to step start / `GET /healthz`",
         lambda r: ratio(p50(r.held, CLIENT), r.healthz.p50 if r.healthz else None)),
        ("one idle slot: agent's delivery to step start / `sh -c date` spawn to clock read",
         lambda r: ratio(p50(r.held, "delivery to step start (agent)"), shell)),
        ("plain: submit to step start / `GET /healthz`",
         lambda r: ratio(p50(r.plain, CLIENT), r.healthz.p50 if r.healthz else None)),
        ("throughput: submission rate / completion rate",
         lambda r: ratio(r.throughput.submit_rate, r.throughput.completion_rate)
         if r.throughput else None),
    ]  # fmt: skip
    return [
        [label, *("-" if (v := compute(r)) is None else f"{v:,.1f}x" for r in results)]
        for label, compute in rows
    ]


def report(
    results: list[BackendResult],
    base: Baselines,
    *,
    args: argparse.Namespace,
    started: datetime,
    seconds: float,
    conditions: Conditions,
    code: tuple[str, str],
) -> str:
    info = machine(
        ("fastapi", "starlette", "pydantic", "sqlalchemy", "uvicorn", "httpx", "psycopg",
         "uvloop", "httptools", "orjson"),
        sqlite=True,
    )  # fmt: skip
    info["Load before the run"] = conditions.load_row()
    info["CPU check"] = conditions.check_row()
    for r in results:
        if r.backend == "postgresql":
            db = r.database
            info["PostgreSQL server"] = (
                f"{db.get('server_version', '?')} on 127.0.0.1 (TCP), fsync={db.get('fsync')}, "
                f"synchronous_commit={db.get('synchronous_commit')}, "
                f"full_page_writes={db.get('full_page_writes')} (`tests/support/postgres.py`: "
                "commits do not wait for the disk)"
            )
    changed = (
        "" if code[0] == code[1]
        else f". **The code changed during the run**, to {code[1]}: rerun before relying on it"
    )  # fmt: skip
    out = Report("slotpool task dispatch benchmark").bullets(
        [
            started_line(started, seconds),
            f"Command: `{cli.command('dispatch')}`",
            f"Code: {code[0]}{changed}",
            f"Setup: one `slotpool server` process (uvicorn, one worker) with a local pool of "
            f"{PODS} agent processes x {SLOTS_PER_POD} slots started by its local runtime; server "
            "log level `warning`, everything else at its defaults (claim long poll "
            f"{CLAIM_WAIT_SECONDS} s, heartbeat 5 s). Client, server, agents and database share "
            "the same CPUs.",
            f"Latency phases: sequential tasks of `{DATE_COMMAND}` ({args.warmups} warm-ups, "
            f"then {args.n} measured); the next is submitted once the previous has ended. "
            "Latency = the time `date` printed minus `time.time()` just before the POST (same "
            f"clock). A phase stops after {args.stall_limit} stalled task(s) (step started more "
            f"than {STALL_SECONDS:g} s after the submission): each would take the claim long "
            f"poll's {CLAIM_WAIT_SECONDS} s.",
            f"Throughput: {args.tasks} tasks of `true` from {args.concurrency} threads; "
            "completions per second = tasks / (last `finished_at` - first submission).",
        ]
    )
    out.heading("Machine").facts(info)
    out.heading("Goals").table(["goal", *(r.backend for r in results)], goal_rows(results),
                               align="l" * (len(results) + 1))  # fmt: skip
    out.heading("Baselines (client process, no server involved)")
    stats_table(out, [base.exec_date, base.run_date, base.exec_shell, base.run_shell])
    for r in results:
        backend_section(out, r)
    out.heading("Ratios").table(
        ["ratio of p50s", *(r.backend for r in results)], ratio_rows(results, base)
    )
    out.drift(conditions, "the backends")
    out.heading("Interpretation").bullets(interpretation(results, base))
    out.raw(mechanisms(results))
    return out.text()


def backend_section(out: Report, r: BackendResult) -> None:
    out.heading(r.backend)
    if r.backend == "sqlite":
        out.para(
            f"SQLite {r.database.get('version')}, a file in a temporary directory, WAL, "
            "synchronous=NORMAL (the server's pragmas)."
        )
    out.para(
        f"Pool created and its {PODS} pods ready in {r.pods_ready_seconds:.1f} s; "
        f"backend done in {r.seconds:.0f} s."
    )
    if r.healthz:
        stats_table(out, [r.healthz])
    if r.idle is not None:
        out.para(
            f"The server and its {PODS} idle agents, doing nothing for {r.idle.seconds:.1f} s "
            "(the long-poll claims re-checking every second, heartbeats, the server's "
            "once-a-second passes); the figures are per second:"
        )
        usage_table(out, r.idle, r.idle.seconds, "second")
    for phase in (r.plain, r.held):
        if phase is not None:
            phase_section(out, phase)
    if r.throughput is not None:
        throughput_section(out, r.throughput)
    out.heading("logs", 3)
    if r.log_issues:
        out.para(
            f"{len(r.log_issues)} warning or error lines in the server's and agents' logs; "
            "the first ones:"
        ).code("\n".join(r.log_issues[:15]))
    else:
        out.para("No warning or error line in the server's or the agents' logs.")


# -- what the numbers say ------------------------------------------------------------------------


def latency_bullets(r: BackendResult, phase: LatencyPhase, base: Baselines) -> list[str]:
    """The interpretation of a latency phase: its median split into its parts."""
    found = []
    stats = phase.stats()
    if (total := stats.get(CLIENT)) is not None:
        server = stats.get("submit to delivery (server)")
        agent = stats.get("delivery to step start (agent)")
        post = stats.get(POST)
        stalls = (
            f" {phase.stalls} of its tasks waited more than {STALL_SECONDS:g} s."
            if phase.stalls
            else f" No task waited more than {STALL_SECONDS:g} s."
        )
        found.append(
            f"**{r.backend}, {phase.name}:** p50 {total.p50:.1f} ms, p99 {total.p99:.1f} ms "
            f"(goals 50 and 200 ms).{stalls} Of the p50, "
            f"{server.p50 if server else 0:.1f} ms are the server's (submission to delivery; "
            f"the POST alone takes {post.p50 if post else 0:.1f} ms at the median against "
            f"{r.healthz.p50 if r.healthz else 0:.1f} ms for `GET /healthz`) and "
            f"{agent.p50 if agent else 0:.1f} ms the agent's (the claim answer's commit and trip,"
            " the working directory, spawning the step), of which spawning `sh -c 'date'` from "
            f"Python is {base.exec_shell.p50:.1f} ms.{phase_cost(phase)}"
        )
    if failed := phase.failures():
        reasons = Counter(f"{s.status}: {s.reason}" for s in failed)
        found.append(
            f"**{r.backend}, {phase.name}: {len(failed)} task(s) did not succeed**: "
            + "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common())
            + " (see the agents' log lines above)."
        )
    return found


def phase_cost(phase: LatencyPhase) -> str:
    if phase.usage is None:
        return ""
    n, usage = len(phase.measured()), phase.usage
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
    return cost


def stall_bullet(r: BackendResult, plain: LatencyPhase) -> str:
    first, stalled = plain.samples[0], next(s for s in plain.samples if s.stalled)
    return (
        f"**{r.backend}, plain: tasks wait for the claim long poll.** The first task's "
        f"step started {fmt(first.latency_ms)} ms after its submission; task "
        f"{stalled.index + 1} (submitted once the first had ended, both agents idle) "
        f"waited {fmt(stalled.latency_ms)} ms, {fmt(stalled.server_ms)} ms of it on the "
        f"server between its submission and its delivery in a claim answer: the claim "
        f"long poll's {CLAIM_WAIT_SECONDS} s. Both tasks ran in the same slot "
        f"(`{stalled.where}`). See *Tasks stuck until the claim long poll ends* below."
    )


def throughput_bullet(r: BackendResult, t: Throughput, usage: Usage) -> str:
    server_cpu = usage.server_cpu()
    per_task = server_cpu / t.tasks * 1000
    busy = server_cpu / usage.seconds * 100
    whole = (sum(usage.cpu.values()) + usage.others()) / (usage.seconds * cpu_count())
    agents_ms = usage.cpu.get(AGENTS, 0.0) / t.tasks * 1000
    db = ""
    if (transactions := usage.transactions()) is not None:
        db = (
            f" PostgreSQL took {usage.cpu.get('PostgreSQL', 0.0) / t.tasks * 1000:.1f} "
            f"ms of CPU and {transactions / t.tasks:.1f} transactions per task."
        )
    handoff = (
        f"; at the median a freed slot had its next task delivered {t.handoff.p50:.0f} ms later "
        f"({t.handoff.maximum:,.0f} ms at most)."
        if t.handoff
        else "."
    )
    return (
        f"**{r.backend}, throughput: {t.completion_rate:.1f} completions/s, limited by "
        f"the server process's CPU.** It used {per_task:.0f} ms of CPU per task and was "
        f"busy {busy:.0f}% of one CPU for the whole run, while the machine as a whole "
        f"was {whole * 100:.0f}% busy ({cpu_count()} CPUs): one Python process can "
        f"complete at most about {1000 / per_task:.0f} tasks per second this way. The "
        f"agents took {agents_ms:.1f} ms per task.{db} Submissions alone went at "
        f"{t.submit_rate:.1f}/s (their POSTs took {t.post.p50 if t.post else 0:.0f} ms at the "
        "median: the server's event loop was saturated), so the ceiling is the same process, "
        f"shared between accepting and running tasks. {len(t.slow_handoffs)} of "
        f"{t.handoff.n if t.handoff else 0} freed slots waited more than {STALL_SECONDS:g} s "
        f"for their next task while tasks were queued{handoff}"
    )


def interpretation(results: list[BackendResult], base: Baselines) -> list[str]:
    """What the numbers of this run say, per finding."""
    found: list[str] = []
    for r in results:
        if r.plain is not None and r.plain.stalls:
            found.append(stall_bullet(r, r.plain))
        for phase in (r.plain, r.held):
            if phase is not None:
                found += latency_bullets(r, phase, base)
        if r.throughput is not None and r.throughput.usage is not None:
            found.append(throughput_bullet(r, r.throughput, r.throughput.usage))
    if results and (idle := results[0].idle) is not None:
        found.append(
            f"Idle, the server used {idle.server_cpu() / idle.seconds * 1000:.0f} ms of CPU per "
            "second with its two agents"
            + "".join(
                f" ({r.backend}: {txn / r.idle.seconds:.0f} transactions per second)"
                for r in results
                if r.idle is not None and (txn := r.idle.transactions()) is not None
            )
            + ": each agent's pending claim looks at the database once per long poll (it is "
            "woken by signals, `services/notify.py`), plus heartbeats and the server's "
            "once-a-second sweeper and local-pod passes."
        )
    return found


def mechanisms(results: list[BackendResult]) -> list[str]:
    """The mechanisms behind the findings, found once (see the two texts below)."""
    if any(r.plain is not None and r.plain.stalls for r in results):
        return [*STALL_MECHANISM, "", *CPU_MECHANISMS]
    return CPU_MECHANISMS


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
    "fullest ready pod (`place` in `domain/pods.py`, called from `services/dispatch.py`). When "
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
    "Not re-measured by each run: a look on 2026-12-03 at a py-spy profile of the server "
    "under the throughput phase (`--profile`) and at timings of its parts in one process; "
    "check it against the code before relying on it.",
    "",
    "* Statements: a task under load costs two requests (the submission, and the result that "
    "brings the slot's next task, `?then=1`) and 21 statements on SQLite, 23 on PostgreSQL, in "
    "about six units of work; `tests/api/test_statement_count.py` pins the counts. BEGIN and "
    "COMMIT come on top: on PostgreSQL each is a round trip, and each round trip costs the "
    "server a pass of its event loop.",
    "* Python, SQLite: SQLAlchemy's Core and ORM execution is about a third of the server's "
    "samples (the session, the execution context, the result's type processing), the request "
    "stack (uvicorn, FastAPI's routing and dependencies, pydantic) about a quarter, and "
    "uvicorn's socket write, whose kernel time on loopback includes the receiving side, "
    "another 13%. A unit of work of three statements costs about 170 us since the sessions "
    "make their calls inline (`store/inline_sqlite.py`, 400 us through the async engine); raw "
    "`sqlite3` does the same in about 10 us. No single slotpool function dominates: the cost "
    "is the number of units of work and requests per task.",
    "* Python, PostgreSQL: the same, plus every statement's round trip through psycopg's async "
    "connection and SQLAlchemy's greenlet bridge: about twice SQLite's CPU per task.",
    "* For 300 completions per second one process would need about 3 ms of CPU per task; the "
    "agents' own CPU (8-9 ms per task in the table above: httpx, and forking the step) shares "
    "the same 2 "
    "CPUs here.",
]
