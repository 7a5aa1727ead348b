"""The processes the harness starts: what ``/proc`` says of them, how to end them, and the check
that nothing the test run started outlives it.

``psutil`` is not a dependency, so ``/proc`` is read directly (Linux). A process is named by its
pid *and* its start time wherever it is ended later, so a pid the kernel reused is never hit.

The leak check: ``become_subreaper()`` makes this process the one that adopts its orphaned
descendants (``PR_SET_CHILD_SUBREAPER``), so a process started by the suite stays a descendant of
it even when whatever started it has died (an agent's step after the agent was SIGKILLed, a
daemon that forked away from its starter). ``leftovers()`` lists, after a grace period, the
descendants still alive; ``end()`` kills them and reaps what became a zombie of ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
_TICK = os.sysconf("SC_CLK_TCK")
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the harness uses (times in seconds)."""

    state: str
    ppid: int
    pgid: int
    start_time: int  # clock ticks since boot: with the pid, names one process for good
    user: float
    system: float
    children: float  # user + system of its reaped children


def stat(pid: int) -> ProcStat | None:
    """What the kernel says of ``pid``; None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After the command name (which may hold spaces and ")"): state is field 3 of proc(5).
    fields = raw[raw.rfind(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) / _TICK for v in fields[11:15])
    return ProcStat(
        state=fields[0],
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        start_time=int(fields[19]),
        user=utime,
        system=stime,
        children=cutime + cstime,
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not reaped yet) counts as gone."""
    found = stat(pid)
    return found is not None and found.state not in ("Z", "X")


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(user, system, its reaped children's user + system) CPU seconds of ``pid``; zeros when
    it is gone."""
    found = stat(pid)
    return (0.0, 0.0, 0.0) if found is None else (found.user, found.system, found.children)


def parent_pid(pid: int) -> int | None:
    found = stat(pid)
    return None if found is None else found.ppid


def pids() -> Iterator[int]:
    """Every process of the machine (that ``/proc`` shows)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def children(pid: int) -> list[int]:
    return [child for child in pids() if parent_pid(child) == pid]


def descendants(root: int, by_parent: dict[int, list[int]] | None = None) -> list[int]:
    """Every live descendant of ``root`` (not ``root`` itself), parents before children; pass
    ``parents()`` read once to look at several roots."""
    by_parent = parents() if by_parent is None else by_parent
    found: list[int] = []
    pending = [root]
    while pending:
        below = by_parent.get(pending.pop(), [])
        found += below
        pending += below
    return found


def parents() -> dict[int, list[int]]:
    """The live processes of the machine by their parent's pid."""
    by_parent: dict[int, list[int]] = {}
    for pid in pids():
        found = stat(pid)
        if found is not None and found.state not in ("Z", "X"):
            by_parent.setdefault(found.ppid, []).append(pid)
    return by_parent


def environment(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with (empty when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


# -- a process we started, and ending it ---------------------------------------------------------


@dataclass
class Started:
    """A process we started: identified by pid *and* start time, so a reused pid is never hit."""

    name: str
    pid: int
    start_time: int
    popen: subprocess.Popen[bytes] | None = None  # None when known only by its pid

    @classmethod
    def of(cls, name: str, pid: int, popen: subprocess.Popen[bytes] | None = None) -> Started:
        found = stat(pid)
        return cls(name, pid, found.start_time if found else 0, popen)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        found = stat(self.pid)
        return found is not None and found.state != "Z" and found.start_time == self.start_time

    def signal(self, signum: int, *, group: bool = False) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, signum)
            elif self.popen is not None:
                self.popen.send_signal(signum)
            else:
                os.kill(self.pid, signum)


def stop_all(processes: Iterable[Started], *, timeout: float, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once none of them is alive (at most 5 s
    after the SIGKILL). With ``group``, each one's process group is signalled."""
    running = [p for p in processes if p.alive()]
    for process in running:
        process.signal(signal.SIGTERM, group=group)
    _wait_gone(running, timeout)
    kill_all(running, group=group)


def kill_all(processes: Iterable[Started], *, group: bool = False) -> None:
    """SIGKILL, and wait (at most 5 s) until they are gone; Popen children are reaped."""
    running = [p for p in processes if p.alive()]
    for process in running:
        process.signal(signal.SIGKILL, group=group)
    _wait_gone(running, 5.0)
    for process in running:
        if process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=1.0)


def tree(roots: Iterable[int], by_parent: dict[int, list[int]] | None = None) -> list[Started]:
    """The processes of ``roots`` and every live descendant, snapshotted now: killing a parent
    first would let its children escape to whoever adopts them."""
    by_parent = parents() if by_parent is None else by_parent
    found: dict[int, Started] = {}
    for root in roots:
        for pid in [root, *descendants(root, by_parent)]:
            if alive(pid):
                found.setdefault(pid, Started.of("tree", pid))
    return list(found.values())


def _wait_gone(processes: list[Started], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)


# -- nothing outlives the run --------------------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid}: {self.command}"


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants; False where the kernel cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def leftovers(*, grace: float) -> list[Leftover]:
    """This process's descendants still alive after ``grace`` seconds (those ending by
    themselves, a step that just saw its file, are given that long)."""
    deadline = time.monotonic() + grace
    while (found := descendants(os.getpid())) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS * 4)
    return [Leftover(pid, command_line(pid)) for pid in found]


def end(found: Iterable[Leftover]) -> None:
    """SIGKILL each one, then reap every zombie child of this process."""
    kill_all(Started.of("leftover", leftover.pid) for leftover in found)
    reap_zombies()


def reap_zombies() -> None:
    """Wait for this process's dead children: orphans it adopted end up as its zombies."""
    for pid in children(os.getpid()):
        found = stat(pid)
        if found is not None and found.state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
