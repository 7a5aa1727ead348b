"""A sampling profile of another process (the server) with py-spy, while a phase runs: written as a
speedscope file (open it at speedscope.app or with ``npx speedscope FILE``) and summed up as the
functions with the most samples, own (the frame on top of the stack) and in all (anywhere on it).

py-spy reads the process's memory from outside (ptrace), so the server runs unchanged and its own
time is not distorted by an in-process profiler; ``--nonblocking`` does not even pause it to
sample. It needs ptrace rights over the process: root, or the same user with
``kernel.yama.ptrace_scope`` at 0 (or ``CAP_SYS_PTRACE`` in a container)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.machine import ROOT

PROFILES = ROOT / "bench" / "profiles"
RATE = 200  # samples per second
STOP_SECONDS = 30.0  # longest wait for py-spy to write its file once told to stop


class ProfilerMissing(RuntimeError):
    pass


def py_spy() -> str:
    """The py-spy binary: beside this Python (the dev dependencies install it) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfilerMissing(
            "py-spy is not installed: install the dev dependencies (pip install -e '.[dev]')"
        )
    return found


@dataclass(frozen=True)
class FunctionSamples:
    name: str  # function (file:line of its definition)
    own: float  # samples with it on top of the stack
    total: float  # samples with it anywhere on the stack


@dataclass
class SampledProfile:
    """What py-spy recorded: the file, how many samples, and the functions by samples."""

    path: Path
    samples: float = 0.0  # in ``unit``
    unit: str = "samples"
    functions: list[FunctionSamples] = field(default_factory=list)
    error: str = ""

    def top(self, key: str, n: int) -> list[FunctionSamples]:
        return sorted(self.functions, key=lambda f: -getattr(f, key))[:n]


@contextlib.contextmanager
def recording(pid: int, path: Path, *, rate: int = RATE) -> Iterator[SampledProfile]:
    """Sample process ``pid`` until the block ends, into ``path`` (speedscope); the profile it
    yields is filled in once py-spy has written the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    result = SampledProfile(path)
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking"]
    # A function's samples together, whatever line it was on; only samples holding the
    # interpreter lock: a thread waiting (the event loop in epoll, a worker thread on its
    # queue) is not seen as idle by py-spy, and would otherwise fill the profile.
    argv += ["--function", "--gil"]
    argv += ["--format", "speedscope", "--output", str(path)]
    log = path.with_suffix(".log")
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield result
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if path.exists():
            log.unlink(missing_ok=True)
            summarise(result)
        else:
            result.error = f"py-spy wrote no profile: {log.read_text(errors='replace')[-500:]}"


def summarise(result: SampledProfile) -> None:
    """Count each function's own and total samples in the speedscope file."""
    document = json.loads(result.path.read_text())
    frames = [
        f"{frame['name']} ({short(frame.get('file') or '?')}:{frame.get('line', '?')})"
        for frame in document["shared"]["frames"]
    ]
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for profile in document["profiles"]:
        result.unit = "s" if profile.get("unit") == "seconds" else "samples"
        weights = profile.get("weights") or [1] * len(profile["samples"])
        for stack, weight in zip(profile["samples"], weights, strict=True):
            if not stack:
                continue
            result.samples += weight
            own[frames[stack[-1]]] += weight
            for name in {frames[i] for i in stack}:
                total[name] += weight
    result.functions = [FunctionSamples(name, own[name], total[name]) for name in total]


def short(path: str) -> str:
    """A source file as a reader finds it: from its package on (site-packages, the standard
    library and ``src/`` cut)."""
    for marker in ("/site-packages/", "/src/", f"/lib/python{sys.version_info[0]}."):
        if marker in path:
            path = path.split(marker, 1)[1]
            return path.split("/", 1)[1] if marker.startswith("/lib/") else path
    return path


def relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)
