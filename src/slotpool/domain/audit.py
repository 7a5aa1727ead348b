"""An audit entry: an admin change, who made it, what it changed, and the revision of the
changed object before and after where it has one (a pool). Written as a line of the logger
``slotpool.audit`` once the change has committed (``store.uow``): a refused or rolled-back change
leaves none. Never a token's value or a task's environment: only names and ids."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Target = Mapping[str, str | int | bool | list[str] | None]


@dataclass(frozen=True)
class AuditEntry:
    action: str  # e.g. pool.create, freeze_window.remove, pool_token.rotate, task.cancel
    by: str  # the admin token's name (or what made the change: "slotpool up")
    target: Target = field(default_factory=dict)
    revision_before: int | None = None
    revision_after: int | None = None

    def fields(self) -> dict[str, object]:
        return {
            "action": self.action,
            "who": self.by,
            **self.target,
            "revision_before": self.revision_before,
            "revision_after": self.revision_after,
        }
