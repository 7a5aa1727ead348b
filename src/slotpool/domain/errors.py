"""Validation problems as data, so that the API, the CLI and the tests all say the same thing.

An ``Issue`` names the field path (dotted, list indices as numbers: ``freeze_schedules.0.to_time``),
what is wrong, and where useful what would be valid. ``ConfigInvalid`` carries all of them at once:
a client fixing a payload should not have to discover its mistakes one round trip at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    path: str
    message: str
    hint: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"field": self.path, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


def join_path(parts: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in parts)


class ConfigInvalid(ValueError):
    """A payload was refused; nothing was stored."""

    def __init__(self, issues: Sequence[Issue], summary: str = "invalid configuration") -> None:
        self.issues = tuple(issues)
        self.summary = summary
        super().__init__(f"{summary}: " + "; ".join(f"{i.path}: {i.message}" for i in issues))
