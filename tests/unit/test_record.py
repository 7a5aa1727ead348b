"""What a pass records, as pure functions of its values (``controller/record.py``): why queued
tasks wait, which holds are news, and the event of each applied action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotpool.controller.record import action_events, hold_events, queue_reason, record_of
from slotpool.controller.types import Applied, Executed
from slotpool.domain.config import PoolConfig
from slotpool.domain.events import Outcome
from slotpool.domain.freeze import FreezePolicy, FreezeSchedule, FreezeState, freeze_state
from slotpool.domain.pods import PodState
from slotpool.domain.scaling import (
    Backoff,
    CreatePods,
    DeletePod,
    Observation,
    PodObservation,
    Reason,
    plan,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
WINDOW = FreezeSchedule(from_time="11:00", to_time="14:00", weekdays=[1], timezone="UTC")
NO_NEW = WINDOW.model_copy(update={"policy": FreezePolicy.no_new_tasks})
THAWED = freeze_state([], now=NOW, default_tz="UTC", unfreeze_until=None)
FROZEN = freeze_state([WINDOW], now=NOW, default_tz="UTC", unfreeze_until=None)
FROZEN_NO_NEW = freeze_state([NO_NEW], now=NOW, default_tz="UTC", unfreeze_until=None)


def starting(name: str) -> PodObservation:
    return PodObservation(
        name=name, state=PodState.starting, config_hash="h", created_at=NOW, idle_since=NOW, idle=1
    )


def observe(
    *pods: PodObservation,
    queued: int,
    freeze: FreezeState = THAWED,
    backoff: Backoff | None = None,
    **config: Any,
) -> Observation:
    return Observation(
        pool_id="pool-aaaaaaaaaaaaaaaa",
        config=PoolConfig(**config),
        config_hash="h",
        freeze=freeze,
        queued=queued,
        pods=pods,
        backoff=backoff or Backoff(),
    )


BACKING_OFF = Backoff(failures=1, last_failure_at=NOW - timedelta(seconds=1))
REASONS: dict[str, tuple[Observation, str]] = {
    "frozen": (
        observe(queued=1, freeze=FROZEN),
        f"waiting: {FROZEN.reason()}; no Pod is created until 2026-01-05 14:00 UTC",
    ),
    "frozen, no new tasks": (
        observe(queued=1, freeze=FROZEN_NO_NEW),
        "waiting: change freeze (no_new_tasks) until 2026-01-05 14:00 UTC; "
        f"{FROZEN_NO_NEW.reason()}",
    ),
    "backing off": (
        observe(queued=1, backoff=BACKING_OFF, min_replicas=0),
        "waiting: Pod creation backs off after 1 failed rounds: 1 Pods to create and 0 to "
        "rebuild wait until 2026-01-05 12:00 UTC",
    ),
    "at max_replicas": (
        observe(starting("a"), queued=3, min_replicas=0, max_replicas=1, slots_per_pod=1),
        "waiting for a free slot: demand of 3 slots needs 3 Pods; max_replicas is 1",
    ),
    "Pods created by this pass": (
        observe(queued=1, min_replicas=0),
        "waiting for a free slot: Pods are starting",
    ),
    "Pods starting already": (
        observe(starting("a"), queued=1, min_replicas=0, slots_per_pod=1),
        "waiting for a free slot: Pods are starting",
    ),
    "nothing on the way": (
        observe(queued=0, min_replicas=0),
        "waiting for a free slot",
    ),
}


@pytest.mark.parametrize(("observation", "expected"), REASONS.values(), ids=REASONS.keys())
def test_why_queued_tasks_wait(observation: Observation, expected: str) -> None:
    assert queue_reason(observation, plan(observation, NOW)) == expected


def test_nothing_queued_writes_no_reason_and_an_unmoved_back_off_is_not_written() -> None:
    observation = observe(queued=0, min_replicas=0)
    record = record_of(observation, plan(observation, NOW), [], backoff=Backoff())
    assert record.queue_reason is None
    assert record.backoff is None


def test_a_hold_is_news_once_and_again_when_its_words_change() -> None:
    frozen = observe(queued=1, freeze=FROZEN)
    first, holds = hold_events(plan(frozen, NOW), frozenset())
    assert [(e.action, e.reason, e.outcome) for e in first] == [("hold", "frozen", Outcome.held)]
    again, same = hold_events(plan(frozen, NOW), holds)
    assert again == []
    assert same == holds
    more = observe(queued=2, freeze=FROZEN)  # the message counts the queued tasks
    changed, _ = hold_events(plan(more, NOW), holds)
    assert len(changed) == 1


def test_each_applied_action_is_an_event_with_its_pods_and_its_error() -> None:
    observation = observe(queued=0, min_replicas=2)
    decided = plan(observation, NOW)
    (create,) = decided.actions
    delete = DeletePod(name="old", reason=Reason.scale_down, message="idle")
    assert isinstance(create, CreatePods)
    executed = Executed(
        (
            Applied(action=create, outcome=Outcome.done, pod="p-1, p-2", created=("p-1", "p-2")),
            Applied(action=delete, outcome=Outcome.failed, error="503: down"),
        )
    )
    events = action_events(decided, executed)
    assert [(e.action, e.pod, e.outcome) for e in events] == [
        ("create_pods", "p-1, p-2", Outcome.done),
        ("delete_pod", "old", Outcome.failed),
    ]
    assert events[1].message == "idle (503: down)"
    assert events[0].inputs == decided.summary()
    assert executed.failures == ["delete_pod failed: 503: down"]
    assert executed.created == ["p-1", "p-2"]
