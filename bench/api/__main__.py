"""``python -m bench.api``: the options, a run per backend, and the report (printed instead of
written with ``--no-write``); the package's docstring says what is measured."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from bench.api.measure import run_backend
from bench.api.report import report
from bench.harness import cli
from bench.harness.databases import BACKENDS
from bench.harness.machine import Conditions

# -- entry point -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser(
        "api", "Benchmark slotpool's REST API on SQLite and PostgreSQL, with baselines.",
        "RESULTS.md",
    )  # fmt: skip
    parser.add_argument(
        "--backend", choices=BACKENDS, action="append",
        help="Run only this backend (repeatable); default: both.",
    )  # fmt: skip
    parser.add_argument(
        "--pools", type=int, default=1000,
        help="Pools to create (default 1000; listing reads at most 1000).",
    )  # fmt: skip
    parser.add_argument(
        "--scale", type=float, default=1.0,
        help="Multiply the number of measured runs (e.g. 0.2 for a quick smoke run).",
    )  # fmt: skip
    args = cli.quick(parser.parse_args(argv), pools=20, scale=0.05)
    if args.pools < 1:
        parser.error("--pools must be at least 1")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.exit_on_sigterm()
    started, clock = datetime.now(UTC), time.monotonic()
    conditions = Conditions()
    results = []
    for backend in dict.fromkeys(args.backend or BACKENDS):
        print(f"benchmarking {backend} ...", file=sys.stderr, flush=True)
        results.append(run_backend(backend, args.pools, args.scale))
    conditions.done()
    seconds = time.monotonic() - clock
    text = report(
        results, pools=args.pools, started=started, seconds=seconds, conditions=conditions
    )
    cli.write(args, text)
    return 0


# Not re-measured by each run: a one-off breakdown made when this benchmark was written, by
# timing the handlers' parts in-process (same 1,000 pools). Check it against the code (api.routes,
# services.pools, store.pools) before relying on it, and redo it when those change.


if __name__ == "__main__":
    sys.exit(main())
