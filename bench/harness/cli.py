"""The command line every scenario shares: where its report goes (``--output``, ``--no-write``),
``--quick`` (a tiny run that writes nothing, to see that it works), the command recorded in the
report, and ending cleanly on SIGTERM (the processes a scenario started are stopped by the
``finally`` blocks that started them)."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from bench.harness.machine import ROOT


def parser(scenario: str, description: str, output: str) -> argparse.ArgumentParser:
    """The scenario's parser, with ``--output`` (default ``bench/<output>``), ``--no-write`` and
    ``--quick``; the scenario adds its own options and applies ``--quick`` to them."""
    found = argparse.ArgumentParser(
        prog=f"python -m bench.{scenario}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default = ROOT / "bench" / output
    found.add_argument(
        "--output", type=Path, default=None, help=f"the report (default bench/{output})"
    )
    found.set_defaults(default_output=default)
    found.add_argument(
        "--no-write", action="store_true", help="print the report instead of writing it"
    )
    found.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run to see it works; writes no report unless --output names one",
    )
    return found


def quick(args: argparse.Namespace, **sizes: object) -> argparse.Namespace:
    """With ``--quick``: ``sizes`` replace the options of the same names, and the recorded
    report is left alone (a report goes only to an ``--output`` named)."""
    if args.quick:
        for name, value in sizes.items():
            setattr(args, name, value)
        args.no_write = args.no_write or args.output is None
    args.output = args.output or args.default_output
    return args


def command(scenario: str) -> str:
    """The command that produced the report: ``scripts/bench`` says it, else this one."""
    return os.environ.get("BENCH_COMMAND") or shlex.join(
        [".venv/bin/python", "-m", f"bench.{scenario}", *sys.argv[1:]]
    )


def exit_on_sigterm() -> None:
    """On SIGTERM, unwind as on Ctrl-C, so everything started is stopped by its ``finally``."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def write(args: argparse.Namespace, text: str) -> None:
    """The report: into its file, or (``--no-write``) onto the terminal: it is the summary."""
    if args.no_write:
        print(text)
        return
    args.output.write_text(text, encoding="utf-8")
    print(f"\nwrote {args.output}", file=sys.stderr)
