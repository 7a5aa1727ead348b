"""The machine a benchmark ran on, the code it ran, and how busy the machine was: what every
report's "Machine" table says, so a result is read against the machine it came from."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.harness.cpu import busy_processes, cpu_count
from bench.harness.stats import elapsed_ms

ROOT = Path(__file__).resolve().parents[2]


def read_first(path: str, prefix: str) -> str | None:
    """The value of the first line of ``path`` starting with ``prefix`` (``key: v`` or ``k=v``)."""
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(prefix):
                separator = ":" if ":" in line else "="
                return line.split(separator, 1)[1].strip()
    return None


def cpu_description() -> str:
    model = read_first("/proc/cpuinfo", "model name") or platform.processor() or "?"
    details = []
    family = read_first("/proc/cpuinfo", "cpu family")
    number = read_first("/proc/cpuinfo", "model\t")
    if family and number:
        details.append(f"family {family}, model {number}")
    mhz = read_first("/proc/cpuinfo", "cpu MHz")
    with contextlib.suppress(ValueError):
        details.append(f"{float(mhz or ''):.0f} MHz")
    if "hypervisor" in (read_first("/proc/cpuinfo", "flags") or "").split():
        details.append("virtual machine")
    return f"{model} ({', '.join(details)})" if details else model


def cpu_check_ms() -> float:
    """A fixed pure-Python loop, best of 5: shows when a (virtual) machine ran slower than usual."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        sum(range(5_000_000))
        best = min(best, elapsed_ms(start))
    return best


def machine(libraries: Sequence[str], *, sqlite: bool = False) -> dict[str, str]:
    """CPU, CPUs, memory, OS, Python (and SQLite), and the versions of ``libraries``."""
    memory_kb = read_first("/proc/meminfo", "MemTotal")
    memory = "?"
    if memory_kb and memory_kb.split()[0].isdigit():
        memory = f"{int(memory_kb.split()[0]) / 1024 / 1024:.1f} GiB"
    os_name = (read_first("/etc/os-release", "PRETTY_NAME=") or platform.system()).strip('"\n')
    versions = []
    for package in libraries:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    found = {
        "CPU": cpu_description(),
        "CPUs (nproc)": str(cpu_count()),
        "Memory": memory,
        "OS": f"{os_name}, kernel {platform.release()} ({platform.machine()})",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    if sqlite:
        found["SQLite"] = sqlite3.sqlite_version
    found["Libraries"] = ", ".join(versions)
    return found


def code_fingerprint() -> str:
    """Which slotpool code ran: a digest of ``src/slotpool``'s Python files, and when the newest
    of them changed (the code may change between runs, or even during one)."""
    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted((ROOT / "src" / "slotpool").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    changed = datetime.fromtimestamp(newest, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"`{digest.hexdigest()[:12]}` (SHA-256 of `src/slotpool/**/*.py`; newest change {changed})"
    )


class Conditions:
    """How the machine stood before the run and after it: the load, the busiest other
    processes, and a fixed CPU check (a slower host shows there first)."""

    def __init__(self) -> None:
        self.load = os.getloadavg()
        self.others = busy_processes()
        self.check_before = cpu_check_ms()
        self.check_after = self.check_before

    def done(self) -> None:
        self.check_after = cpu_check_ms()

    @property
    def drift(self) -> float:
        """How much the CPU check moved during the run, in percent."""
        checks = (self.check_before, self.check_after)
        return abs(checks[1] - checks[0]) / min(checks) * 100

    def load_row(self) -> str:
        """The "Load before the run" cell."""
        load = " / ".join(f"{value:.2f}" for value in self.load)
        return (
            f"load average {load} (1 / 5 / 15 min); busiest other processes over 2 s: "
            f"{', '.join(self.others) or 'none'} (100% = one CPU)"
        )

    def check_row(self, note: str = "") -> str:
        """The "CPU check" cell."""
        return (
            f"`sum(range(5_000_000))`, best of 5: {self.check_before:.1f} ms before the run, "
            f"{self.check_after:.1f} ms after{note}"
        )
