"""``python -m bench.k8s``: the options, the cluster and its rounds, and the report (printed
instead of written with ``--no-write``); the package's docstring says what is measured."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from datetime import UTC, datetime

from bench.harness import cli
from bench.harness.cluster import started_cluster
from bench.harness.machine import Conditions
from bench.k8s import __doc__ as about
from bench.k8s.report import report
from bench.k8s.rounds import NAMESPACE, Run, measure

# -- entry point -----------------------------------------------------------------------------------


def parse_rate(text: str) -> float:
    rate = math.inf if text.lower() in ("inf", "off") else float(text)
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"a rate must be > 0 or inf, got {text}")
    return rate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("k8s", about or "", "K8S.md")
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
    args = cli.quick(parser.parse_args(argv), pods=10, rounds=1, settle=0.2)
    if args.pods < 2 or args.rounds < 1:
        parser.error("--pods must be >= 2 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.exit_on_sigterm()
    started = time.monotonic()
    run = Run(args=args, started=datetime.now(UTC), conditions=Conditions())
    with started_cluster("slotpool-bench-k8s-") as cluster:
        run.cluster_start_s = cluster.start_seconds
        version = cluster.version
        run.server_version = f"{version.get('gitVersion', '?')} ({version.get('goVersion', '?')})"
        cluster.prepare(NAMESPACE)
        asyncio.run(measure(cluster, run))
    run.conditions.done()
    run.seconds = time.monotonic() - started
    cli.write(args, report(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
