"""What a pass learns by comparing the books with the runtime, decided without touching either.

The controller lists the pool's pods in the runtime and reads the pods it has recorded; ``classify``
says what follows from the two lists: a pod the books do not know is adopted, one whose state,
phase, Node or reason moved is updated, one that ended or vanished is retired (its tasks become
``lost`` with the reason given here), the records of pods that ended long ago are forgotten, and
the runtime's copy of an ended pod is deleted. A retired pod ends ``deleted`` when slotpool had
deleted it on purpose (the ``PodEnd`` the executor wrote when it began: scaled down, replaced,
drained...), and ``failed`` otherwise, with what the runtime says (crashed, exited, evicted,
vanished, deleted outside slotpool). The controller writes what it is told and nothing
else, so every rule of that comparison is here, with its table tests (``tests/unit``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from slotpool.domain.pods import EndCause, Pod, PodEnd, PodState, state_from_runtime

# Records of ended pods stay this long (the API and UI show why they ended), then go.
ENDED_KEPT = timedelta(minutes=10)


@dataclass(frozen=True, kw_only=True)
class Listed:
    """A pod as the runtime listed it; ``why`` is the runtime's reason in one line, or ""."""

    name: str
    phase: str
    node: str | None
    config_hash: str | None
    created_at: datetime
    deleting: bool
    ended: bool
    why: str = ""
    reason: str | None = None  # the runtime's reason code alone, e.g. "Evicted"
    uid: str | None = None  # what its agent proves itself with (agent_identity.py)


@dataclass(frozen=True, kw_only=True)
class Adopt:
    """A pod with the pool's labels that the books do not know yet."""

    name: str
    state: PodState
    phase: str
    node: str | None
    reason: str
    config_hash: str | None
    created_at: datetime
    uid: str | None = None


@dataclass(frozen=True, kw_only=True)
class Update:
    """The runtime reports what the record does not say yet."""

    pod: Pod
    state: PodState
    phase: str
    node: str | None
    reason: str


class Cause(StrEnum):
    ended = "ended"  # the runtime says the pod ended
    vanished = "vanished"  # the runtime no longer lists it, and slotpool did not delete it
    deleted = "deleted"  # slotpool deleted it, and now the runtime no longer lists it


@dataclass(frozen=True, kw_only=True)
class Retire:
    """The pod's life ends in the books: ``deleted`` or ``failed`` as ``end`` says, its slots
    freed, its tasks lost."""

    pod: Pod
    reason: str
    cause: Cause
    end: PodEnd

    @property
    def reported(self) -> bool:
        """Whether the pass reports it as ended (slotpool's own deletions are not news)."""
        return self.cause is not Cause.deleted and not self.end.deliberate


@dataclass(frozen=True)
class Forget:
    """Records of pods that ended more than ``ENDED_KEPT`` ago."""

    pod_ids: tuple[int, ...]


@dataclass(frozen=True)
class DeleteEnded:
    """The runtime's copy of an ended pod goes (its record stays, saying why it ended)."""

    name: str


Change = Adopt | Update | Retire | Forget | DeleteEnded
C = TypeVar("C", Adopt, Update, Retire, Forget, DeleteEnded)


@dataclass(frozen=True)
class PendingPod:
    """A pod not running yet, and why (the scheduler's words when the runtime has them)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Classified:
    """What to write, which pods are pending, and which listed pods live (not ended or being
    deleted): only those are offered to the scaling decision."""

    changes: tuple[Change, ...]
    pending: tuple[PendingPod, ...]
    alive: tuple[str, ...]

    def of_kind(self, kind: type[C]) -> list[C]:
        return [change for change in self.changes if isinstance(change, kind)]


@dataclass(frozen=True)
class _Seen:
    """One listed pod judged against its record (None: not recorded)."""

    row: Pod | None
    pod: Listed
    state: PodState
    reason: str


def classify(
    books: Sequence[Pod],
    listed: Sequence[Listed],
    *,
    runtime: str,
    listed_at: datetime,
    ended_kept: timedelta = ENDED_KEPT,
) -> Classified:
    """Compare the pool's records (``books``) with what ``runtime`` listed at ``listed_at``."""
    known = {row.name: row for row in books}
    seen = [_judge(known.pop(pod.name, None), pod, runtime) for pod in listed]
    changes = [change for one in seen if (change := _listed_change(one, runtime)) is not None]
    changes += _forget(known.values(), listed_at - ended_kept)
    changes += [_gone(row, runtime) for row in known.values() if _vanished(row, listed_at)]
    changes += [DeleteEnded(pod.name) for pod in listed if pod.ended]
    return Classified(
        changes=tuple(changes),
        pending=tuple(_pending(one) for one in seen if one.state is PodState.pending),
        alive=tuple(pod.name for pod in listed if not pod.ended and not pod.deleting),
    )


def _judge(row: Pod | None, pod: Listed, runtime: str) -> _Seen:
    state = state_from_runtime(row.state if row else None, phase=pod.phase, deleting=pod.deleting)
    reason = pod.why if state in (PodState.pending, PodState.failed) else ""
    if state is PodState.terminating and not (row and row.reason):
        reason = f"{runtime} pod {pod.name} is being deleted, not by slotpool"
    return _Seen(row, pod, state, reason)


def _listed_change(seen: _Seen, runtime: str) -> Change | None:
    row, pod = seen.row, seen.pod
    if row is None:
        return None if pod.ended else _adopt(seen)
    if row.state.ended:
        return None  # retired already: nothing the runtime says changes that
    if pod.ended:
        why = f"{runtime} pod {pod.name} ended: {pod.why or pod.phase}"
        return Retire(pod=row, reason=why, cause=Cause.ended, end=_end_of_ended(row, pod))
    if not _changed(row, seen):
        return None
    reason = seen.reason or row.reason
    return Update(pod=row, state=seen.state, phase=pod.phase, node=pod.node, reason=reason)


def _adopt(seen: _Seen) -> Adopt:
    pod = seen.pod
    return Adopt(
        name=pod.name,
        state=seen.state,
        phase=pod.phase,
        node=pod.node,
        reason=seen.reason,
        config_hash=pod.config_hash,
        created_at=pod.created_at,
        uid=pod.uid,
    )


def _changed(row: Pod, seen: _Seen) -> bool:
    """Whether the runtime reports something the record does not say yet (a pass writes only
    what changed: most passes write nothing for most pods)."""
    now = (seen.state, seen.pod.phase, seen.pod.node, seen.reason or row.reason)
    return now != (row.state, row.phase, row.node, row.reason)


def _forget(unlisted: Iterable[Pod], cutoff: datetime) -> list[Forget]:
    old = tuple(
        row.id for row in unlisted if row.state.ended and row.updated_at and row.updated_at < cutoff
    )
    return [Forget(old)] if old else []


def _vanished(row: Pod, listed_at: datetime) -> bool:
    """A recorded pod the runtime did not list. Static agents have no runtime pod, and a row
    newer than the list (an agent that registered meanwhile) cannot have been listed."""
    return not row.state.ended and row.phase is not None and row.created_at < listed_at


def _deleted_by_slotpool(row: Pod) -> PodEnd | None:
    """The end slotpool wrote when it deleted the Pod; None if slotpool did not delete it (a
    ``draining`` Pod, say, is not deleted yet: whatever ended it was not slotpool)."""
    return row.end if row.state is PodState.terminating else None


def _end_of_ended(row: Pod, pod: Listed) -> PodEnd:
    """Why a recorded pod the runtime reports ended, ended."""
    deleted = _deleted_by_slotpool(row)
    if deleted is not None:
        return deleted
    if pod.reason == "Evicted":
        return PodEnd(EndCause.evicted)
    if row.state is PodState.terminating:
        return PodEnd(EndCause.deleted_outside)
    return PodEnd(EndCause.exited if pod.phase == "Succeeded" else EndCause.crashed)


def _gone(row: Pod, runtime: str) -> Retire:
    deleted = _deleted_by_slotpool(row)
    if deleted is not None:  # slotpool deleted it; now it is gone
        return Retire(pod=row, reason=row.reason, cause=Cause.deleted, end=deleted)
    why = f"{runtime} pod {row.name} vanished (no longer in the runtime)"
    cause = EndCause.deleted_outside if row.state is PodState.terminating else EndCause.vanished
    return Retire(pod=row, reason=why, cause=Cause.vanished, end=PodEnd(cause))


def _pending(seen: _Seen) -> PendingPod:
    return PendingPod(seen.pod.name, seen.reason or "not scheduled yet")
