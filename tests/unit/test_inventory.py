"""What a listing means against the books (``domain.inventory.classify``), as a table of
(recorded pods, listed pods) -> changes, pending pods and live pods, and as properties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotpool.domain.inventory import (
    ENDED_KEPT,
    Adopt,
    Cause,
    Change,
    Classified,
    DeleteEnded,
    Forget,
    Listed,
    Retire,
    Update,
    classify,
)
from slotpool.domain.pods import EndCause, Pod, PodEnd, PodState, Slot, SlotState

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # when the runtime listed the pods
BEFORE = AT - timedelta(minutes=1)
LONG_AGO = AT - ENDED_KEPT - timedelta(seconds=1)
RECENTLY = AT - ENDED_KEPT + timedelta(seconds=1)
RUNTIME = "kubernetes"
_ids = iter(range(1, 1_000_000))


def row(
    name: str,
    state: PodState,
    *,
    phase: str | None = "Running",
    node: str | None = "node-1",
    reason: str = "",
    created_at: datetime = BEFORE,
    updated_at: datetime | None = BEFORE,
    pod_id: int | None = None,
    end: PodEnd | None = None,
) -> Pod:
    return Pod(
        id=pod_id if pod_id is not None else next(_ids),
        pool_id="pool-0123456789abcdef",
        name=name,
        state=state,
        config_hash="h1",
        reason=reason,
        agent_version=None,
        registered_at=None,
        last_heartbeat_at=None,
        created_at=created_at,
        slots=(Slot(0, SlotState.idle, None, created_at),),
        phase=phase,
        node=node,
        updated_at=updated_at,
        end=end,
    )


def pod(
    name: str,
    phase: str = "Running",
    *,
    node: str | None = "node-1",
    why: str = "",
    deleting: bool = False,
    reason: str | None = None,
) -> Listed:
    return Listed(
        name=name,
        phase=phase,
        node=node,
        config_hash="h1",
        created_at=BEFORE,
        deleting=deleting,
        ended=phase in ("Succeeded", "Failed"),
        why=why,
        reason=reason,
    )


def described(change: Change) -> tuple[Any, ...]:
    """A change as a short tuple, so the table can say what it expects."""
    if isinstance(change, Adopt):
        return ("adopt", change.name, change.state, change.reason)
    if isinstance(change, Update):
        return ("update", change.pod.name, change.state, change.phase, change.node, change.reason)
    if isinstance(change, Retire):
        return ("retire", change.pod.name, change.cause, change.end.describe(), change.reason)
    if isinstance(change, Forget):
        return ("forget", change.pod_ids)
    return ("delete", change.name)


@dataclass(frozen=True)
class Case:
    books: tuple[Pod, ...]
    listed: tuple[Listed, ...]
    changes: tuple[tuple[Any, ...], ...]
    pending: tuple[tuple[str, str], ...] = ()
    alive: tuple[str, ...] | None = None  # None: every listed pod


SCALED = PodEnd(EndCause.scaled_down)
DRAINED_BY_ANN = PodEnd(EndCause.drained, by="ann")
VANISHED = f"{RUNTIME} pod a vanished (no longer in the runtime)"
ENDED_SUCCEEDED = f"{RUNTIME} pod a ended: Succeeded"
UNSCHEDULABLE = "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
NOT_BY_US = f"{RUNTIME} pod a is being deleted, not by slotpool"

CASES: dict[str, Case] = {
    # -- listed, not in the books ----------------------------------------------------------------
    "an unknown running pod is adopted, starting": Case(
        books=(),
        listed=(pod("a"),),
        changes=(("adopt", "a", PodState.starting, ""),),
    ),
    "an unknown pending pod is adopted with the scheduler's reason": Case(
        books=(),
        listed=(pod("a", "Pending", node=None, why=UNSCHEDULABLE),),
        changes=(("adopt", "a", PodState.pending, UNSCHEDULABLE),),
        pending=(("a", UNSCHEDULABLE),),
    ),
    "an unknown pending pod without a reason is not scheduled yet": Case(
        books=(),
        listed=(pod("a", "Pending", node=None),),
        changes=(("adopt", "a", PodState.pending, ""),),
        pending=(("a", "not scheduled yet"),),
    ),
    "an unknown pod being deleted is adopted as terminating, not by slotpool": Case(
        books=(),
        listed=(pod("a", deleting=True),),
        changes=(("adopt", "a", PodState.terminating, NOT_BY_US),),
        alive=(),
    ),
    "an unknown ended pod is not adopted; the runtime's copy goes": Case(
        books=(),
        listed=(pod("a", "Succeeded"),),
        changes=(("delete", "a"),),
        alive=(),
    ),
    # -- listed and in the books -----------------------------------------------------------------
    "a recorded pod that ended is retired with the runtime's reason": Case(
        books=(row("a", PodState.ready),),
        listed=(pod("a", "Failed", why="Error: exit code 1"),),
        changes=(
            ("retire", "a", Cause.ended, "crashed", f"{RUNTIME} pod a ended: Error: exit code 1"),
            ("delete", "a"),
        ),
        alive=(),
    ),
    "a recorded pod that ended without a reason says its phase": Case(
        books=(row("a", PodState.starting),),
        listed=(pod("a", "Succeeded"),),
        changes=(
            ("retire", "a", Cause.ended, "exited on its own", f"{RUNTIME} pod a ended: Succeeded"),
            ("delete", "a"),
        ),
        alive=(),
    ),
    "a retired pod that ended is only deleted from the runtime": Case(
        books=(row("a", PodState.failed, reason="agent a stopped heartbeating"),),
        listed=(pod("a", "Failed"),),
        changes=(("delete", "a"),),
        alive=(),
    ),
    "a retired pod the runtime still runs is left alone": Case(
        books=(row("a", PodState.failed, reason="agent a stopped heartbeating"),),
        listed=(pod("a"),),
        changes=(),
    ),
    "a pod reported as recorded writes nothing": Case(
        books=(row("a", PodState.starting),),
        listed=(pod("a"),),
        changes=(),
    ),
    "a ready pod reported running stays ready: nothing to write": Case(
        books=(row("a", PodState.ready),),
        listed=(pod("a"),),
        changes=(),
    ),
    "a pod on another Node is updated": Case(
        books=(row("a", PodState.starting),),
        listed=(pod("a", node="node-2"),),
        changes=(("update", "a", PodState.starting, "Running", "node-2", ""),),
    ),
    "a pending pod that runs now is starting, and keeps its last reason": Case(
        books=(row("a", PodState.pending, phase="Pending", node=None, reason=UNSCHEDULABLE),),
        listed=(pod("a"),),
        changes=(("update", "a", PodState.starting, "Running", "node-1", UNSCHEDULABLE),),
    ),
    "a pending pod with a new reason is updated and listed as pending": Case(
        books=(row("a", PodState.pending, phase="Pending", node=None),),
        listed=(pod("a", "Pending", node=None, why=UNSCHEDULABLE),),
        changes=(("update", "a", PodState.pending, "Pending", None, UNSCHEDULABLE),),
        pending=(("a", UNSCHEDULABLE),),
    ),
    "a pod deleted behind slotpool's back is terminating, not by slotpool": Case(
        books=(row("a", PodState.ready),),
        listed=(pod("a", deleting=True),),
        changes=(("update", "a", PodState.terminating, "Running", "node-1", NOT_BY_US),),
        alive=(),
    ),
    "a pod slotpool is deleting keeps its reason": Case(
        books=(row("a", PodState.terminating, reason="deleted: idle"),),
        listed=(pod("a", deleting=True),),
        changes=(),
        alive=(),
    ),
    # -- in the books, not listed ----------------------------------------------------------------
    "a running pod the runtime no longer lists vanished": Case(
        books=(row("a", PodState.ready),),
        listed=(),
        changes=(("retire", "a", Cause.vanished, "vanished", VANISHED),),
    ),
    "a pod slotpool deleted that is gone now is retired with the deletion's reason": Case(
        books=(row("a", PodState.terminating, reason="deleted: idle for 300s", end=SCALED),),
        listed=(),
        changes=(("retire", "a", Cause.deleted, "scaled down", "deleted: idle for 300s"),),
    ),
    "a pod slotpool rebuilt that is gone now was replaced": Case(
        books=(row("a", PodState.terminating, reason="rebuilt", end=PodEnd(EndCause.replaced)),),
        listed=(),
        changes=(("retire", "a", Cause.deleted, "replaced by a rebuild", "rebuilt"),),
    ),
    "a pod an admin drained that is gone now says who drained it": Case(
        books=(row("a", PodState.terminating, reason="deleted", end=DRAINED_BY_ANN),),
        listed=(),
        changes=(("retire", "a", Cause.deleted, "drained by ann", "deleted"),),
    ),
    "a pod slotpool deleted that ended before it vanished still ends as deleted": Case(
        books=(row("a", PodState.terminating, reason="deleted: idle", end=SCALED),),
        listed=(pod("a", "Succeeded", deleting=True),),
        changes=(("retire", "a", Cause.ended, "scaled down", ENDED_SUCCEEDED), ("delete", "a")),
        alive=(),
    ),
    "a pod slotpool deleted because it never started ends as failed": Case(
        books=(row("a", PodState.terminating, reason="stuck", end=PodEnd(EndCause.not_started)),),
        listed=(),
        changes=(("retire", "a", Cause.deleted, "never started", "stuck"),),
    ),
    "a drained pod that crashed before it was deleted crashed": Case(
        books=(row("a", PodState.draining, end=DRAINED_BY_ANN),),
        listed=(pod("a", "Failed", why="Error"),),
        changes=(
            ("retire", "a", Cause.ended, "crashed", f"{RUNTIME} pod a ended: Error"),
            ("delete", "a"),
        ),
        alive=(),
    ),
    "an evicted pod was evicted": Case(
        books=(row("a", PodState.ready),),
        listed=(pod("a", "Failed", why="Evicted: low on memory", reason="Evicted"),),
        changes=(
            (
                "retire",
                "a",
                Cause.ended,
                "evicted",
                f"{RUNTIME} pod a ended: Evicted: low on memory",
            ),
            ("delete", "a"),
        ),
        alive=(),
    ),
    "a terminating pod without a reason that is gone was deleted outside slotpool": Case(
        books=(row("a", PodState.terminating),),
        listed=(),
        changes=(("retire", "a", Cause.vanished, "deleted outside slotpool", VANISHED),),
    ),
    "a pod deleted behind slotpool's back that is gone was deleted outside slotpool": Case(
        books=(row("a", PodState.terminating, reason=NOT_BY_US),),
        listed=(),
        changes=(("retire", "a", Cause.vanished, "deleted outside slotpool", VANISHED),),
    ),
    "a pod drained while pending stays draining": Case(
        books=(row("a", PodState.draining, phase="Pending", node=None, end=DRAINED_BY_ANN),),
        listed=(pod("a", "Pending", node=None),),
        changes=(),
        pending=(),
    ),
    "a static agent (no runtime phase) is not the runtime's to list": Case(
        books=(row("a", PodState.ready, phase=None, node=None),),
        listed=(),
        changes=(),
    ),
    "an agent that registered after the listing cannot have been listed": Case(
        books=(row("a", PodState.ready, created_at=AT + timedelta(seconds=1)),),
        listed=(),
        changes=(),
    ),
    "an agent that registered at the instant of the listing cannot have been listed": Case(
        books=(row("a", PodState.ready, created_at=AT),),
        listed=(),
        changes=(),
    ),
    "a pod that ended longer ago than ENDED_KEPT is forgotten": Case(
        books=(row("a", PodState.failed, updated_at=LONG_AGO, pod_id=7),),
        listed=(),
        changes=(("forget", (7,)),),
    ),
    "a pod that ended recently is kept (the API says why it ended)": Case(
        books=(row("a", PodState.failed, updated_at=RECENTLY),),
        listed=(),
        changes=(),
    ),
    "a failed record without an update time is kept": Case(
        books=(row("a", PodState.failed, updated_at=None),),
        listed=(),
        changes=(),
    ),
    "a pod deleted on purpose is forgotten like a failed one": Case(
        books=(row("a", PodState.deleted, updated_at=LONG_AGO, pod_id=6, end=SCALED),),
        listed=(),
        changes=(("forget", (6,)),),
    ),
    "a pod deleted on purpose is not retired again, whatever the runtime says": Case(
        books=(row("a", PodState.deleted, end=SCALED),),
        listed=(pod("a", "Failed"),),
        changes=(("delete", "a"),),
        alive=(),
    ),
    "forgotten together, in one change": Case(
        books=(
            row("a", PodState.failed, updated_at=LONG_AGO, pod_id=8),
            row("b", PodState.deleted, updated_at=LONG_AGO, pod_id=9),
        ),
        listed=(),
        changes=(("forget", (8, 9)),),
    ),
    # -- everything at once, in order ------------------------------------------------------------
    "listed changes first, then forgotten, then vanished, then deletions in the runtime": Case(
        books=(
            row("gone", PodState.ready),
            row("old", PodState.failed, updated_at=LONG_AGO, pod_id=11),
            row("done", PodState.ready),
            row("moved", PodState.starting),
        ),
        listed=(pod("done", "Succeeded"), pod("new"), pod("moved", node="node-3")),
        changes=(
            (
                "retire",
                "done",
                Cause.ended,
                "exited on its own",
                f"{RUNTIME} pod done ended: Succeeded",
            ),
            ("adopt", "new", PodState.starting, ""),
            ("update", "moved", PodState.starting, "Running", "node-3", ""),
            ("forget", (11,)),
            (
                "retire",
                "gone",
                Cause.vanished,
                "vanished",
                f"{RUNTIME} pod gone vanished (no longer in the runtime)",
            ),
            ("delete", "done"),
        ),
        alive=("new", "moved"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_classify(case: Case) -> None:
    result = classify(case.books, case.listed, runtime=RUNTIME, listed_at=AT)
    assert tuple(described(c) for c in result.changes) == case.changes
    assert tuple((p.name, p.reason) for p in result.pending) == case.pending
    alive = case.alive if case.alive is not None else tuple(p.name for p in case.listed)
    assert result.alive == alive


def test_only_vanished_and_ended_pods_are_reported_as_ended() -> None:
    result = classify(
        [
            row("deleted", PodState.terminating, reason="deleted: idle", end=SCALED),
            row("lost", PodState.ready),
        ],
        [pod("scaled", "Succeeded")],
        runtime=RUNTIME,
        listed_at=AT,
    )
    assert [(r.pod.name, r.reported) for r in result.of_kind(Retire)] == [
        ("deleted", False),
        ("lost", True),
    ]
    ended_on_purpose = classify(
        [row("scaled", PodState.terminating, reason="deleted: idle", end=SCALED)],
        [pod("scaled", "Succeeded")],
        runtime=RUNTIME,
        listed_at=AT,
    )
    assert [r.reported for r in ended_on_purpose.of_kind(Retire)] == [False]


@pytest.mark.parametrize("cause", list(EndCause))
def test_a_retired_pod_ends_deleted_exactly_when_its_end_was_deliberate(cause: EndCause) -> None:
    (retired,) = classify(
        [row("a", PodState.terminating, reason="x", end=PodEnd(cause))],
        [],
        runtime=RUNTIME,
        listed_at=AT,
    ).of_kind(Retire)
    deliberate = {"scaled_down", "replaced", "drained", "frozen", "removed"}
    assert retired.end.state is (PodState.deleted if cause in deliberate else PodState.failed)


def test_ended_kept_can_be_given() -> None:
    books = [row("a", PodState.failed, updated_at=AT - timedelta(seconds=61), pod_id=5)]
    kept = classify(books, [], runtime=RUNTIME, listed_at=AT)
    assert kept.changes == ()
    short = classify(books, [], runtime=RUNTIME, listed_at=AT, ended_kept=timedelta(minutes=1))
    assert short.changes == (Forget((5,)),)


# -- properties ------------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
PHASES = st.sampled_from(["Pending", "Running", "Succeeded", "Failed"])
INSTANTS = st.sampled_from([LONG_AGO, RECENTLY, BEFORE, AT, AT + timedelta(seconds=1)])


@st.composite
def books_and_listed(draw: st.DrawFn) -> tuple[list[Pod], list[Listed]]:
    recorded = draw(st.lists(NAMES, unique=True, max_size=6))
    books = [
        row(
            name,
            draw(st.sampled_from(list(PodState))),
            phase=draw(st.one_of(st.none(), PHASES)),
            reason=draw(st.sampled_from(["", "deleted: idle"])),
            created_at=draw(INSTANTS),
            updated_at=draw(st.one_of(st.none(), INSTANTS)),
            end=draw(st.one_of(st.none(), st.builds(PodEnd, st.sampled_from(list(EndCause))))),
        )
        for name in recorded
    ]
    shown = draw(st.lists(NAMES, unique=True, max_size=6))
    listed = [
        pod(
            name,
            draw(PHASES),
            why=draw(st.sampled_from(["", "why"])),
            deleting=draw(st.booleans()),
            reason=draw(st.sampled_from([None, "Evicted"])),
        )
        for name in shown
    ]
    return books, listed


def _touched(result: Classified) -> list[int]:
    ids = [c.pod.id for c in result.changes if isinstance(c, Update | Retire)]
    return ids + [i for c in result.of_kind(Forget) for i in c.pod_ids]


@given(books_and_listed())
def test_every_record_changes_at_most_once_and_a_retired_one_never(
    drawn: tuple[list[Pod], list[Listed]],
) -> None:
    books, listed = drawn
    result = classify(books, listed, runtime=RUNTIME, listed_at=AT)
    touched = _touched(result)
    assert len(touched) == len(set(touched))
    failed = {p.id for p in books if p.state.ended}
    assert not failed & {c.pod.id for c in result.changes if isinstance(c, Update | Retire)}


@given(books_and_listed())
def test_nothing_listed_is_lost_and_nothing_unlisted_is_kept_alive(
    drawn: tuple[list[Pod], list[Listed]],
) -> None:
    books, listed = drawn
    result = classify(books, listed, runtime=RUNTIME, listed_at=AT)
    recorded = {p.name for p in books}
    unknown_live = {p.name for p in listed if p.name not in recorded and not p.ended}
    assert {a.name for a in result.of_kind(Adopt)} == unknown_live
    assert {d.name for d in result.of_kind(DeleteEnded)} == {p.name for p in listed if p.ended}
    assert result.alive == tuple(p.name for p in listed if not p.ended and not p.deleting)
    shown = {p.name for p in listed}
    gone = {
        p.name
        for p in books
        if p.name not in shown and not p.state.ended and p.phase is not None and p.created_at < AT
    }
    assert {r.pod.name for r in result.of_kind(Retire) if r.pod.name not in shown} == gone


@given(books_and_listed())
def test_classify_is_a_function_of_its_inputs(drawn: tuple[list[Pod], list[Listed]]) -> None:
    books, listed = drawn
    first = classify(books, listed, runtime=RUNTIME, listed_at=AT)
    assert classify(list(books), list(listed), runtime=RUNTIME, listed_at=AT) == first
