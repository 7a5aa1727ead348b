"""Percentiles of samples in milliseconds, and timing a benchmark: warm-ups, then measured runs."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Stats:
    name: str
    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, name: str, samples_ms: Sequence[float]) -> Stats:
        if len(samples_ms) < 2:
            raise ValueError(f"{name}: need at least 2 samples, got {len(samples_ms)}")
        return cls(
            name=name,
            n=len(samples_ms),
            p50=quantile(samples_ms, 50),
            p90=quantile(samples_ms, 90),
            p99=quantile(samples_ms, 99),
            mean=statistics.fmean(samples_ms),
            minimum=min(samples_ms),
            maximum=max(samples_ms),
        )

    @classmethod
    def maybe(cls, name: str, samples_ms: Sequence[float]) -> Stats | None:
        """None when there are fewer than two samples."""
        return cls.of(name, samples_ms) if len(samples_ms) >= 2 else None


def quantile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); the median for 50; the one value if alone,
    NaN if none."""
    if len(values) < 2:
        return values[0] if values else math.nan
    if q == 50:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms_cells(values: Sequence[float]) -> list[str]:
    """p50, p90, p99 and max of milliseconds, as table cells."""
    if not values:
        return ["-"] * 4
    return [f"{v:.1f}" for v in (*(quantile(values, q) for q in (50, 90, 99)), max(values))]


def elapsed_ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


# One run of a benchmark: does its work, times only the part that counts, returns milliseconds.
Timed = Callable[[int], float]


def measure(name: str, run: Timed, *, warmups: int, n: int) -> Stats:
    """``warmups`` unmeasured runs, then ``n`` measured ones."""
    for i in range(warmups):
        run(i)
    return Stats.of(name, [run(warmups + i) for i in range(n)])


def timed_get(client: httpx.Client, path: str) -> float:
    """Milliseconds of one ``GET path`` that must answer 200 (the HTTP floor: ``/healthz``)."""
    start = time.perf_counter_ns()
    response = client.get(path)
    took = elapsed_ms(start)
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    return took


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values)
