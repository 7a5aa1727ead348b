"""Who used the machine's CPUs: this process, the processes a benchmark started (a server, its
agents, the test cluster, PostgreSQL) and everybody else. The machine is shared (2 CPUs, other
people's test runs), so every result says how much of it the others took."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import processes


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have been busy since boot (/proc/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        busy = sum(values[:8]) - values[3] - values[4]
        return busy / os.sysconf("SC_CLK_TCK")
    return 0.0


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 once it is gone)."""
    user, system, _ = processes.cpu_seconds(pid)
    return user + system


def busy_processes(seconds: float = 2.0, top: int = 5) -> list[str]:
    """The processes of other users of this machine that used the most CPU over ``seconds``
    (the benchmark shares the CPUs with whatever else runs: this says how much that was)."""

    def sample() -> dict[int, tuple[str, float]]:
        found = {}
        for pid in processes.pids():
            with contextlib.suppress(OSError):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                found[pid] = (name, process_seconds(pid))
        return found

    before = sample()
    time.sleep(seconds)
    after = sample()
    used: dict[str, float] = {}
    for pid, (name, total) in after.items():
        if pid != os.getpid() and pid in before:
            used[name] = used.get(name, 0.0) + total - before[pid][1]
    busiest = sorted(used.items(), key=lambda item: -item[1])[:top]
    return [f"{name} {cpu / seconds * 100:.0f}%" for name, cpu in busiest if cpu > 0]


def postgres_seconds(postmaster: int | None) -> float:
    """CPU seconds of a local PostgreSQL server: its postmaster and its backends, the ended
    backends included (the postmaster reaped them: their time is in its children's). 0 when the
    server is not ours to see (``SLOTPOOL_TEST_PG_URL``)."""
    if postmaster is None:
        return 0.0
    pids = [postmaster, *processes.children(postmaster)]
    return sum(sum(processes.cpu_seconds(pid)) for pid in pids)


@dataclass(frozen=True)
class Reading:
    """CPU seconds so far: this process, some processes by name, the whole machine."""

    process: float
    named: dict[str, float]
    machine: float

    @classmethod
    def now(cls, named: dict[str, float] | None = None) -> Reading:
        return cls(time.process_time(), dict(named or {}), machine_busy_seconds())


@dataclass(frozen=True)
class Use:
    """CPU seconds between two readings; ``others`` is the rest of the machine (other users'
    processes: tests, builds, ...)."""

    process: float
    named: dict[str, float]
    others: float

    @classmethod
    def between(cls, before: Reading, after: Reading) -> Use:
        named = {name: after.named[name] - before.named.get(name, 0.0) for name in after.named}
        process = after.process - before.process
        others = after.machine - before.machine - process - sum(named.values())
        return cls(process, named, max(0.0, others))

    @property
    def named_total(self) -> float:
        return sum(self.named.values())
