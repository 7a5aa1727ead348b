"""Pods and their slots as the control plane sees them: the states a pod goes through, what the
runtime's report does to that state, and the placement rule that picks the slot for a queued task.

Pure, like the rest of the domain: the manifest a runtime creates is built in ``manifest.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class SlotState(StrEnum):
    idle = "idle"
    busy = "busy"
    reserved = "reserved"


class PodState(StrEnum):
    pending = "pending"
    starting = "starting"
    ready = "ready"
    draining = "draining"
    terminating = "terminating"
    deleted = "deleted"  # ended because slotpool (or an admin) deleted it on purpose
    failed = "failed"  # ended on its own: crashed, evicted, its agent lost, vanished

    @property
    def ended(self) -> bool:
        return self in ENDED_STATES


ENDED_STATES = frozenset({PodState.deleted, PodState.failed})


class EndCause(StrEnum):
    """Why a Pod is on its way out or gone. The first group are deliberate (the Pod ends
    ``deleted``), the second are failures (it ends ``failed``)."""

    scaled_down = "scaled_down"
    replaced = "replaced"
    drained = "drained"
    frozen = "frozen"
    removed = "removed"

    crashed = "crashed"
    exited = "exited"
    evicted = "evicted"
    agent_lost = "agent_lost"
    vanished = "vanished"
    deleted_outside = "deleted_outside"
    not_started = "not_started"

    @property
    def deliberate(self) -> bool:
        return self in _DELIBERATE


_DELIBERATE = frozenset(
    {EndCause.scaled_down, EndCause.replaced, EndCause.drained, EndCause.frozen, EndCause.removed}
)
_END_WORDS = {
    EndCause.scaled_down: "scaled down",
    EndCause.replaced: "replaced by a rebuild",
    EndCause.drained: "drained",
    EndCause.frozen: "deleted for a freeze window",
    EndCause.removed: "deleted by slotpool",
    EndCause.crashed: "crashed",
    EndCause.exited: "exited on its own",
    EndCause.evicted: "evicted",
    EndCause.agent_lost: "agent lost",
    EndCause.vanished: "vanished",
    EndCause.deleted_outside: "deleted outside slotpool",
    EndCause.not_started: "never started",
}


@dataclass(frozen=True)
class PodEnd:
    """Why a Pod ends, and who asked (for a manual drain): the same words in the API, the CLI
    and the UI come from ``describe``."""

    cause: EndCause
    by: str | None = None

    @property
    def deliberate(self) -> bool:
        return self.cause.deliberate

    @property
    def state(self) -> PodState:
        """The state the Pod ends in once it is gone."""
        return PodState.deleted if self.deliberate else PodState.failed

    def describe(self) -> str:
        words = _END_WORDS[self.cause]
        return f"{words} by {self.by}" if self.by else words


@dataclass(frozen=True)
class PodCapacity:
    """A pod as placement sees it."""

    pod_id: int
    state: PodState
    config_hash: str | None
    idle_slots: tuple[int, ...]
    used_slots: int  # busy or reserved


def place(pods: Sequence[PodCapacity], *, current_hash: str | None) -> tuple[int, int] | None:
    """The (pod, slot) for the next queued task: a ready pod's idle slot, pods with the current
    config first, then the fullest (packing frees whole pods for scale-down), then the oldest."""
    candidates = [p for p in pods if p.state is PodState.ready and p.idle_slots]
    if not candidates:
        return None
    best = min(
        candidates,
        key=lambda p: (p.config_hash != current_hash, -p.used_slots, p.pod_id),
    )
    return best.pod_id, min(best.idle_slots)


def state_from_runtime(current: PodState | None, *, phase: str, deleting: bool) -> PodState:
    """A pod's state after the runtime reported ``phase``: a running pod is ``starting`` until
    its agent registers (``ready``), and what the agent or slotpool decided (``ready``,
    ``draining``, ``terminating``, an end) is not undone by a report of the same phase; a Pod
    drained while it was still pending stays ``draining``."""
    if current is not None and current.ended:
        return current
    if deleting:
        return PodState.terminating
    if current in (PodState.draining, PodState.terminating) and phase in ("Pending", "Running"):
        return current
    if phase == "Pending":
        return PodState.pending
    if phase in ("Succeeded", "Failed"):
        return PodState.failed
    if current in (PodState.ready, PodState.draining, PodState.terminating):
        return current
    return PodState.starting


@dataclass(frozen=True)
class Slot:
    index: int
    state: SlotState
    task_id: str | None
    since: datetime


@dataclass(frozen=True)
class Pod:
    id: int
    pool_id: str
    name: str
    state: PodState
    config_hash: str | None
    reason: str
    agent_version: str | None
    registered_at: datetime | None
    last_heartbeat_at: datetime | None
    created_at: datetime
    slots: tuple[Slot, ...]
    phase: str | None = None
    node: str | None = None
    updated_at: datetime | None = None
    end: PodEnd | None = None  # set once slotpool decided to end it, or it ended
    # The SHA-256 of what proves slotpool launched it (agent_identity.py); None for static agents.
    uid_digest: str | None = None
    # Whether an agent registered and holds the pod's credential (only its digest is kept).
    has_credential: bool = False

    @property
    def all_idle(self) -> bool:
        return all(s.state is SlotState.idle for s in self.slots)

    def capacity(self) -> PodCapacity:
        return PodCapacity(
            pod_id=self.id,
            state=self.state,
            config_hash=self.config_hash,
            idle_slots=tuple(s.index for s in self.slots if s.state is SlotState.idle),
            used_slots=sum(1 for s in self.slots if s.state is not SlotState.idle),
        )
