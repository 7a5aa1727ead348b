"""``python -m bench.controller``: the options, the parts asked for, and the report (printed
instead of written with ``--no-write``); the package's docstring says what each part measures."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bench.controller import __doc__ as about
from bench.controller.burst import run_burst, run_burst_queued
from bench.controller.common import BURST_CONFIG
from bench.controller.reaction import run_reaction
from bench.controller.report import Run, kept_findings, report
from bench.controller.resync import run_resync
from bench.harness import cli
from bench.harness.machine import Conditions
from bench.harness.stats import quantile
from slotpool.logs import configure_logging

PARTS = ("reaction", "burst", "burst-queued", "resync")


def listed(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if wrong := [p for p in parts if p not in choices]:
            raise argparse.ArgumentTypeError(f"unknown {wrong}; choose from {choices}")
        return parts

    return parse


def numbers(kind: type[float] | type[int]) -> Callable[[str], list[float] | list[int]]:
    return lambda text: [kind(p) for p in text.split(",") if p]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("controller", about or "", "CONTROLLER.md")
    add = parser.add_argument
    add(
        "--parts",
        type=listed(PARTS),
        default=list(PARTS),
        help="reaction,burst,burst-queued,resync",
    )
    add("--samples", type=int, default=200, help="reaction: tasks measured (200)")
    add("--warmups", type=int, default=5, help="reaction: tasks not measured (5)")
    add(
        "--resyncs",
        type=numbers(float),
        default=[30.0, 1.0],
        help="reaction: pod_sync_seconds values (30,1)",
    )
    add("--tasks", type=int, default=400, help="burst(-queued): tasks (400)")
    add("--pods", type=int, default=100, help="burst(-queued): Pods wanted (100)")
    add("--rate", type=float, default=50.0, help="burst(-queued): requests/s (50)")
    add("--connections", type=int, default=16, help="burst: HTTP connections (16)")
    add("--rounds", type=int, default=3, help="burst(-queued): rounds per way (3)")
    add("--settle", type=float, default=1.0, help="burst: rest between rounds (1 s)")
    add("--no-profile", dest="profile", action="store_false", help="burst: no cProfile round")
    add("--pools", type=int, default=1000, help="resync: pools (1000)")
    add("--pods-per-pool", type=int, default=10, help="resync: Pods per pool (10)")
    add(
        "--backends",
        type=listed(("sqlite", "postgresql")),
        default=["sqlite", "postgresql"],
        help="resync: sqlite,postgresql",
    )
    add("--batch", type=int, default=50, help="resync: gather batch size (50)")
    add(
        "--trace-pools", type=int, default=200, help="resync: pools of the tracemalloc passes (200)"
    )
    add(
        "--extras",
        type=listed(("sqlite", "postgresql")),
        default=["sqlite"],
        help="resync: backends that also run the gather, tracemalloc and history parts (sqlite)",
    )
    add(
        "--history",
        type=numbers(int),
        default=[0, 100, 1000],
        help="resync: ended Pods' rows of the one-pool runs (0,100,1000)",
    )
    add("--history-runs", type=int, default=20, help="resync: passes per pool (20)")
    args = cli.quick(
        parser.parse_args(argv), samples=10, warmups=2, resyncs=[30.0], tasks=40, pods=10,
        rounds=1, settle=0.2, pools=20, batch=5, trace_pools=5, history=[0, 10], history_runs=3,
    )  # fmt: skip
    args.pods = min(args.pods, BURST_CONFIG["max_replicas"])
    if args.samples < 2 or args.rounds < 1 or args.tasks < args.pods:
        parser.error("--samples must be >= 2, --rounds >= 1 and --tasks >= --pods")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.exit_on_sigterm()
    configure_logging(level="warning", log_format="console")
    started = time.monotonic()
    run = Run(args=args, started=datetime.now(UTC), conditions=Conditions())
    for resync in args.resyncs if "reaction" in args.parts else []:
        print(f"reaction: pod_sync_seconds={resync:g} ...", flush=True)
        reaction = run_reaction(resync, args.samples, args.warmups)
        run.reactions.append(reaction)
        print(
            f"  POST answered -> create_agent: p50 {quantile(reaction.after_return_ms, 50):.1f} ms"
            f", p99 {quantile(reaction.after_return_ms, 99):.1f} ms; new pool: "
            + ("no create" if reaction.new_pool_ms is None else f"{reaction.new_pool_ms:.0f} ms"),
            flush=True,
        )
    if "burst" in args.parts:
        run.burst = run_burst(args)
    if "burst-queued" in args.parts:
        run.queued = run_burst_queued(args)
    if "resync" in args.parts:
        print("resync ...", flush=True)
        run.resync = run_resync(args)
    run.conditions.done()
    run.seconds = time.monotonic() - started
    cli.write(args, report(run, kept_findings(args.output)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
