"""The one Markdown report writer of the benchmarks: a report is a title, a list of facts about
the run, the machine's table, and sections of prose, bullets, tables and code blocks. Each
scenario says what to write; how it is written is here."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from bench.harness.machine import Conditions
from bench.harness.profile import Hotspot
from bench.harness.stats import Stats, median_of

Round = TypeVar("Round")
Cell = str | int | float


class Report:
    """Markdown, built line by line; ``text()`` is the file."""

    def __init__(self, title: str) -> None:
        self.lines: list[str] = [f"# {title}", ""]

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"

    def heading(self, text: str, level: int = 2) -> Report:
        self.lines += [f"{'#' * level} {text}", ""]
        return self

    def para(self, *texts: str) -> Report:
        """One paragraph per text."""
        for text in texts:
            self.lines += [text, ""]
        return self

    def bullets(self, items: Iterable[str]) -> Report:
        found = [f"* {item}" for item in items]
        if found:
            self.lines += [*found, ""]
        return self

    def table(
        self, header: Sequence[str], rows: Iterable[Sequence[Cell]], *, align: str = ""
    ) -> Report:
        """``align``: one letter per column, ``l`` or ``r`` (default: the first left, the rest
        right)."""
        align = align or "l" + "r" * (len(header) - 1)
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "".join("---:|" if a == "r" else "---|" for a in align))
        self.lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
        self.lines.append("")
        return self

    def facts(self, facts: Mapping[str, str]) -> Report:
        """A two-column table without a header (the machine's details)."""
        self.lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items()), ""]
        return self

    def code(self, text: str) -> Report:
        self.lines += ["```", text, "```", ""]
        return self

    def profile(self, intro: str, rows: Iterable[Hotspot], top: str) -> Report:
        """A profile: the chosen functions' table under ``intro``, then the top functions."""
        self.para(intro).table(
            ["function", "calls", "own s", "cumulative s"],
            [
                [f"`{name}`", calls, f"{own:.3f}", f"{total:.3f}"]
                for name, calls, own, total in rows
            ],
        )
        return self.para("Top functions by own time:").code(top)

    def raw(self, lines: Iterable[str]) -> Report:
        self.lines += list(lines)
        return self

    def machine(
        self, info: Mapping[str, str], conditions: Conditions, *, load: bool = True
    ) -> Report:
        facts = dict(info)
        if load:
            facts["Load before the run"] = conditions.load_row()
        facts["CPU check"] = conditions.check_row()
        return self.heading("Machine").facts(facts)

    def drift(self, conditions: Conditions, between: str) -> Report:
        """A warning when the machine's speed moved during the run by more than 15%."""
        if conditions.drift > 15:
            self.para(
                f"The CPU check moved by {conditions.drift:.0f}% between the start and the end "
                "of this run: the (virtual) machine's speed changed meanwhile, so differences of "
                f"that order between {between}, or against another run, are noise rather than "
                "a finding."
            )
        return self


def started_line(started: datetime, seconds: float, extra: str = "") -> str:
    return f"Date: {started:%Y-%m-%d %H:%M:%S} UTC (whole run: {seconds:.0f} s{extra})"


STATS_HEADER = ("n", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms")


def stats_rows(stats: Iterable[Stats]) -> list[list[Cell]]:
    """name, n, p50, p90, p99, max and mean (ms) per row: with ``STATS_HEADER``."""
    return [
        [s.name, s.n, *(f"{v:,.2f}" for v in (s.p50, s.p90, s.p99, s.maximum, s.mean))]
        for s in stats
    ]


class Paired(Generic[Round]):
    """Two ways measured in interleaved rounds (A B, B A, ...): per measure, the median of each
    way, the ratio of the medians, and the range of the ratios of paired rounds."""

    def __init__(self, a: Sequence[Round], b: Sequence[Round]) -> None:
        self.a, self.b = a, b

    def medians(self, value: Callable[[Round], float]) -> tuple[float, float]:
        return median_of([value(r) for r in self.a]), median_of([value(r) for r in self.b])

    def ratio(self, value: Callable[[Round], float]) -> float:
        a, b = self.medians(value)
        return a / b if b > 0 else math.nan

    def pairs(self, value: Callable[[Round], float]) -> list[float]:
        return [value(x) / value(y) for x, y in zip(self.a, self.b, strict=True) if value(y) > 0]

    def spread(self, value: Callable[[Round], float]) -> str:
        pairs = self.pairs(value)
        return f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"

    def row(
        self,
        name: str,
        value: Callable[[Round], float],
        *,
        shown: Callable[[float], str] = lambda v: f"{v:.3f}",
        strong: bool = False,
        ratio: bool = True,
    ) -> list[Cell]:
        """name, A, B, A / B (bold if ``strong``) and the paired range; neither when ``ratio``
        is false."""
        a, b = self.medians(value)
        if not ratio:
            return [name, shown(a), shown(b), "-", "-"]
        quotient = self.ratio(value)
        mark = "**" if strong else ""
        cell = "-" if math.isnan(quotient) else f"{mark}{quotient:.2f}{mark}"
        return [name, shown(a), shown(b), cell, self.spread(value)]
