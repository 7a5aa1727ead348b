"""The Pod creation benchmark's report: both ways side by side per rate limit, what the
ratios say, the runtime's own work, every round and the profiles."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial

from tests.support.kube import pinned_versions

from bench.harness import cli
from bench.harness.cpu import cpu_count
from bench.harness.machine import code_fingerprint, machine
from bench.harness.report import Report, started_line
from bench.harness.stats import median_of, quantile
from bench.k8s.rounds import (
    MICRO_RUNS,
    MODES,
    NAMESPACE,
    OWN_STEPS,
    POD_CONFIG,
    OwnWork,
    Round,
    Run,
    rate_name,
)

# -- the report ------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "n":
        return f"{value:g}"
    return f"{value:.1f}" if unit == "ms" else f"{value:.3f}"


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
    ("cluster CPU (5 processes) per round", "s", lambda r: r.usage.named_total),
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


def summary(out: Report, run: Run, rate: float) -> None:
    paired = run.paired(rate)
    rows = [
        paired.row(
            f"{name} ({unit})", value, shown=partial(fmt, unit=unit),
            strong=name in RATIO_METRICS, ratio=unit != "n",
        )
        for name, unit, value in METRICS
    ]  # fmt: skip
    out.heading(
        f"Limit {rate_name(rate)} ({run.args.rounds} rounds each, medians of the rounds)", 3
    )
    out.table(["measure", "runtime", "direct", "runtime / direct", "paired rounds"], rows)
    pooled = []
    for mode in MODES:
        samples = [ms for r in run.of(rate, mode) for ms in r.to_running_ms]
        pooled.append(
            f"{mode} p50 {quantile(samples, 50):.1f} ms, p99 {quantile(samples, 99):.1f} ms"
        )
    out.para(
        f"All {run.args.rounds * run.args.pods} Pods pooled, call to Running: "
        + "; ".join(pooled)
        + "."
    )


def round_rows(run: Run) -> list[list[str | int]]:
    return [
        [
            step, rate_name(r.rate), r.mode, f"{r.create_wall:.3f}", f"{r.create_cpu:.3f}",
            f"{r.gc.total_seconds:.3f} ({r.gc.passes[2]})", f"{r.process_cpu:.3f}",
            f"{quantile(r.call_ms, 50):.1f}", f"{r.running_p50:.1f}", f"{r.running_p99:.1f}",
            f"{r.all_running:.3f}", f"{r.usage.named_total:.2f}", f"{r.usage.others:.2f}",
        ]
        for step, r in enumerate(run.rounds, start=1)
    ]  # fmt: skip


def own_work_section(out: Report, run: Run) -> None:
    own = run.own
    out.heading("The runtime's own work")
    if own is None:
        out.para("(not measured)")
        return
    per = [
        median_of([r.create_cpu / r.pods for r in run.rounds if r.mode == mode]) * 1e6
        for mode in ("direct", "runtime")
    ]
    extra = own.pod_from_manifest_us + own.runtime_pod_us
    out.para(f"CPU per Pod in isolation (best of 3 x {MICRO_RUNS} calls, one thread):")
    out.table(
        ["step", "us per Pod"],
        [
            ["`Pod.from_dict(manifest)` alone (a direct caller starting from the builder's dict "
             "pays this too)", f"{own.from_dict_us:.0f}"],
            ["runtime: `_pod_from_manifest` (`from_dict` + `to_dict` + round-trip check)",
             f"{own.pod_from_manifest_us:.0f}"],
            ["runtime: `runtime_pod(answer)`", f"{own.runtime_pod_us:.0f}"],
            ["**runtime's own work, total**", f"**{extra:.0f}**"],
            ["measured: creating-thread CPU per Pod, direct (median of all its rounds)",
             f"{per[0]:.0f}"],
            ["measured: creating-thread CPU per Pod, runtime (median of all its rounds)",
             f"{per[1]:.0f}"],
        ],
    )  # fmt: skip
    out.para(
        f"Measured difference runtime - direct: {per[1] - per[0]:+.0f} us per Pod, "
        f"against {extra:.0f} us of the runtime's own steps; the rest of any difference, either "
        "way, is the machine's noise (and the `_call` wrapper's few coroutine and lambda calls)."
    )


def interpretation(run: Run) -> list[str]:
    found = []
    for rate in run.args.rates:
        paired = run.paired(rate)
        wall, cpu = paired.ratio(lambda r: r.create_wall), paired.ratio(lambda r: r.create_cpu)
        ready, p50 = paired.ratio(lambda r: r.all_running), paired.ratio(lambda r: r.running_p50)
        found.append(
            f"Limit {rate_name(rate)}: runtime / direct = {wall:.2f} (create wall time), "
            f"{cpu:.2f} (CPU of the creating thread), {p50:.2f} (call to Running p50), "
            f"{ready:.2f} (time to all Running)."
        )
    if run.own is not None:
        found.append(own_work_finding(run, run.own))
    for rate in [rate for rate in run.args.rates if not math.isinf(rate)]:
        floor = (run.args.pods - 1) / rate
        found.append(
            f"At {rate_name(rate)} the token bucket alone spaces {run.args.pods} creates over "
            f"{floor:.2f} s, so both ways' wall time is the bucket's schedule plus one request: "
            "the ratio there says the runtime keeps to the schedule, not how fast it is."
        )
    found += [profile_finding(run, mode, result) for mode, result in run.profiles.items()]
    if run.usage is not None and run.measured_seconds > 0:
        share = run.usage.others / run.measured_seconds * 100
        found.append(
            f"The machine has {cpu_count()} CPUs, shared by this process, the "
            "5 cluster processes, and whatever else runs (other engineers' test runs during this "
            f"one): other processes used {run.usage.others:.1f} CPU-s over the "
            f"{run.measured_seconds:.0f} s of measured rounds ({share:.0f}% of one CPU), the "
            f"cluster {run.usage.named_total:.1f} CPU-s, this process "
            f"{run.usage.process:.1f} CPU-s. Absolute times move with that load; interleaving "
            "the two ways is what keeps the ratios comparable (see the paired-round ranges)."
        )
    return found


def own_work_finding(run: Run, own: OwnWork) -> str:
    own_s = (own.pod_from_manifest_us + own.runtime_pod_us) * run.args.pods / 1e6
    parts, outside = [], []
    for rate in run.args.rates:
        paired = run.paired(rate)
        direct_cpu = median_of([r.create_cpu for r in run.of(rate, "direct")])
        parts.append(
            f"{1 + own_s / direct_cpu:.3f} expected vs "
            f"{paired.ratio(lambda r: r.create_cpu):.2f} measured at limit {rate_name(rate)}"
        )
        pairs = paired.pairs(lambda r: r.create_cpu)
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
    return (
        f"The runtime's own steps cost {own_s * 1000:.1f} ms of CPU per {run.args.pods} "
        f"Pods (isolated timing below), so the CPU ratio they explain is "
        f"{'; '.join(parts)}; {verdict}."
    )


def profile_finding(run: Run, mode: str, result: Round) -> str:
    own = sum(c for name, _, _, c in result.hotspots if name.endswith(OWN_STEPS))
    shakes = [(n, c) for name, n, _, c in result.hotspots if "do_handshake" in name]
    calls, seconds = shakes[0] if shakes else (0, 0.0)
    text = (
        f"Profiled {mode} round (limit off): {result.profiled_seconds:.3f} s in the creating "
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
    return text + ")."


def report(run: Run) -> str:
    args = run.args
    versions = ", ".join(f"{name} {version}" for name, version in pinned_versions().items())
    out = Report("slotpool Kubernetes runtime: Pod creation benchmark").bullets(
        [
            started_line(run.started, run.seconds, f", of which cluster start "
                         f"{run.cluster_start_s:.0f} s"),
            f"Command: `{cli.command('k8s')}`",
            f"Code: {code_fingerprint()}",
            f"Kubernetes (pinned in `scripts/k8s-testenv`): {versions}; API server reports "
            f"{run.server_version}",
            "Cluster: `tests/support/kube.py` on this machine: etcd, kube-apiserver, "
            "kube-controller-manager, kube-scheduler and kwok with 3 fake Nodes (4 CPU, 16Gi, 110 "
            f"Pods each); namespace `{NAMESPACE}` enforcing the `restricted` Pod Security "
            "Standard.",
            f"Pods: `build_pod_manifest` of `{json.dumps(POD_CONFIG)}` (one pool id per round, "
            "`generateName`); they become Running when kwok marks them so.",
            f"Rounds: {args.pods} creates at once (`asyncio.gather`) per round, {args.rounds} "
            f"rounds per way and limit, alternating (A B, B A, ...); limits: "
            f"{', '.join(rate_name(r) for r in args.rates)}. One unmeasured warm-up round per way "
            f"first. Between rounds every Pod is deleted (grace 0) and gone, then "
            f"{args.settle:g} s of rest.",
            "`runtime` = `KubernetesRuntime.create_pod(manifest)`; `direct` = `await "
            "bucket.acquire(); await client.create(pod)` with the runtime's `TokenBucket` at the "
            "same rate, the same `AsyncClient` (one for both), and `Pod` objects made from the "
            "same manifests before the clock starts.",
            "Times: create wall = first call to last answer; CPU = `time.thread_time()` of the "
            "thread issuing the creates (the watch that sees Pods Running runs in its own thread, "
            "with its own connection, so it is not counted; the process's total is shown too); "
            "call to Running = each Pod's create call (its wait in the token bucket included) to "
            "the watch event that shows it Running; all Running = first call to last Pod "
            "Running.",
        ]
    )  # fmt: skip
    libraries = ("lightkube", "lightkube-models", "httpx2", "anyio", "pydantic", "uvloop")
    out.machine(machine(libraries), run.conditions).para(
        f"The machine has only {cpu_count()} CPUs for the benchmark, the whole control plane "
        "and other engineers' test runs, which went on during this run: absolute numbers are "
        "noisy, the ratios from interleaved rounds are the result."
    )
    out.heading("Results")
    for rate in args.rates:
        summary(out, run, rate)
    out.heading("What it says").bullets(interpretation(run))
    own_work_section(out, run)
    out.heading("Every round").table(
        ["#", "limit", "way", "create s", "thread CPU s", "GC s (full passes)", "process CPU s",
         "call p50 ms", "Running p50 ms", "Running p99 ms", "all Running s", "cluster CPU s",
         "others' CPU s"],
        round_rows(run),
        align="rllrrrrrrrrrr",
    )  # fmt: skip
    out.para(
        "CPU columns: thread = the creating thread during the creates; process = the whole bench "
        "process during the creates; cluster and others' = from the first create call until "
        "every Pod ran (others' = the machine's busy time minus this process and the cluster)."
    )
    if run.profiles:
        profile_section(out, run)
    return out.text()


def profile_section(out: Report, run: Run) -> None:
    cpu_off = (
        run.paired(math.inf).ratio(lambda r: r.create_cpu) if math.inf in run.args.rates else 1.0
    )
    out.heading("Profile").para(
        "One extra round per way, limit off, under cProfile (the creating thread only; "
        "profiling slows it, these rounds are not in the results). CPU ratio of the measured "
        f"rounds without a limit: {cpu_off:.2f}."
    )
    for mode, result in run.profiles.items():
        out.heading(mode, 3).profile(
            "The runtime's functions and the client's main costs (cumulative time of a "
            "coroutine adds up its steps, not the time it waited):",
            result.hotspots,
            result.profile,
        )
