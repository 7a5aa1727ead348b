"""``python -m bench.dispatch``: the options, a run per backend, and the report (printed instead
of written with ``--no-write``); the package's docstring says what is measured."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from bench.dispatch import __doc__ as about
from bench.dispatch.measure import run_backend, spawn_baselines
from bench.dispatch.report import report
from bench.harness import cli
from bench.harness.databases import BACKENDS
from bench.harness.machine import Conditions, code_fingerprint
from bench.harness.pyspy import ProfilerMissing, py_spy


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("dispatch", about or "", "DISPATCH.md")
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
        "--profile",
        action="store_true",
        help="Sample the server process with py-spy during the throughput run: a speedscope "
        "file per backend in bench/profiles/ and its top functions in the report.",
    )
    args = cli.quick(parser.parse_args(argv), n=5, warmups=1, tasks=20, concurrency=4)
    if args.n < 2 or args.warmups < 0 or args.tasks < 2 or args.concurrency < 1:
        parser.error("need --n >= 2, --warmups >= 0, --tasks >= 2, --concurrency >= 1")
    if args.profile:
        try:
            py_spy()
        except ProfilerMissing as exc:
            parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.exit_on_sigterm()
    started, clock = datetime.now(UTC), time.monotonic()
    code_before = code_fingerprint()
    conditions = Conditions()
    print(f"load: {conditions.load_row()}", file=sys.stderr)
    print("baselines ...", file=sys.stderr, flush=True)
    base = spawn_baselines(10, 200)
    results = []
    for backend in dict.fromkeys(args.backend or BACKENDS):
        print(f"benchmarking {backend} ...", file=sys.stderr, flush=True)
        results.append(run_backend(backend, args))
    conditions.done()
    seconds = time.monotonic() - clock
    text = report(
        results,
        base,
        args=args,
        started=started,
        seconds=seconds,
        conditions=conditions,
        code=(code_before, code_fingerprint()),
    )
    cli.write(args, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
