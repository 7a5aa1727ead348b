"""Bounds on what one request may hold, and on the work of saying what is wrong with it.

A request is validated on the server's event loop: its cost must not grow with what a client
chooses to send. Lists have a length checked before their items, mappings a number of entries
checked before their keys (``at_most_entries``), a strict model counts its unknown keys before
pydantic reports each (``StrictModel``), and at most ``MAX_ISSUES`` problems are reported one by
one, each with its hint, the others counted (``capped``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from slotpool.domain.errors import Issue

MAX_ISSUES = 50  # problems reported one by one (with a hint each); the others are counted
SHOWN_UNKNOWN = 10  # unknown keys named when there are too many to report one by one

T = TypeVar("T")

# The tags of a field that takes one of two shapes (a task's ``command``: an argv list or a shell
# command line); pydantic puts the tag into an error's location, an issue's path leaves it out.
ARGV_TAG = "<argv>"
LINE_TAG = "<line>"
SHAPE_TAGS = frozenset({ARGV_TAG, LINE_TAG})


def capped(issues: Iterable[T], total: int, more: Callable[[int], T]) -> list[T]:
    """The first ``MAX_ISSUES`` of ``total`` issues, then one saying how many more there are."""
    shown: list[T] = []
    for issue in issues:
        if len(shown) == MAX_ISSUES:
            break
        shown.append(issue)
    return shown if total <= len(shown) else [*shown, more(total - len(shown))]


def more_issues(count: int) -> Issue:
    return Issue("(more)", f"and {count} more problems, not listed (at most {MAX_ISSUES} are)")


def at_most_entries(limit: int) -> BeforeValidator:
    """A mapping of more than ``limit`` entries is refused before any key or value is looked at
    (pydantic would check every key first)."""

    def check(value: object) -> object:
        if isinstance(value, Mapping) and len(value) > limit:
            raise ValueError(f"has {len(value)} entries; at most {limit} are accepted")
        return value

    return BeforeValidator(check)


def utf8_size(texts: Iterable[str]) -> int:
    return sum(len(text.encode("utf-8")) for text in texts)


def at_most_bytes(limit: int, size: int) -> None:
    if size > limit:
        raise ValueError(f"is {size} bytes (UTF-8); at most {limit} are accepted")


def unknown_keys_problem(data: Mapping[Any, Any], fields: Sequence[str]) -> str | None:
    """Too many unknown keys to report one by one: one message naming the first few."""
    if len(data) <= MAX_ISSUES:
        return None  # cheap: pydantic reports each (at most MAX_ISSUES) with a hint
    known = set(fields)
    unknown = [key for key in data if key not in known]
    if len(unknown) <= MAX_ISSUES:
        return None
    named = ", ".join(repr(key) for key in unknown[:SHOWN_UNKNOWN])
    return (
        f"{len(unknown)} unknown fields ({named} and {len(unknown) - SHOWN_UNKNOWN} more); "
        f"valid keys: {', '.join(fields)}"
    )


class StrictModel(BaseModel):
    """A request model refusing unknown keys, whose cost does not grow with their number."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            problem = unknown_keys_problem(data, tuple(cls.model_fields))
            if problem is not None:
                raise ValueError(problem)
        return data
