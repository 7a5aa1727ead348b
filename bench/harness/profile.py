"""A cProfile of a benchmark's round, as a report shows it: the top functions by own time, and
the rows of chosen functions (function, calls, own s, cumulative s)."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness.machine import ROOT

Hotspot = tuple[str, int, float, float]


def profile_text(profiler: cProfile.Profile, top: int) -> str:
    """The ``top`` functions by own time, with the paths of Python and the repository cut."""
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in (sys.prefix, sys.base_prefix):
        text = text.replace(f"{prefix}/lib/{version}/site-packages/", "")
        text = text.replace(f"{prefix}/lib/{version}/", "")
    text = text.replace(str(ROOT) + "/", "")
    lines = [line.rstrip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return "\n".join(line for line in lines[start:] if line)


def total_seconds(profiler: cProfile.Profile) -> float:
    total: float = pstats.Stats(profiler).total_tt  # type: ignore[attr-defined]
    return total


def hotspots(
    profiler: cProfile.Profile, label: Callable[[str, int, str], str | None], top: int = 1000
) -> list[Hotspot]:
    """(function, calls, own s, cumulative s) of the functions ``label(path, line, name)`` names
    (None: not shown), by cumulative time."""
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    found = []
    for (path, line, name), (_, calls, own, cumulative, _) in table.items():
        shown = label(path, line, name)
        if shown is not None:
            found.append((shown, calls, own, cumulative))
    return sorted(found, key=lambda row: -row[3])[:top]


def where(path: str, line: int, name: str) -> str:
    """``file.py:line name`` (a built-in has no file)."""
    return f"{Path(path).name}:{line} {name}" if path != "~" else name
