"""The controller's decision as tables and properties: scale up and down, rebuild, freeze,
pending timeouts with back-off, wake-up times, and the promises no input may break."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotpool.domain.config import PoolConfig
from slotpool.domain.freeze import FreezePolicy, FreezeSchedule, FreezeState, freeze_state
from slotpool.domain.pods import PodState
from slotpool.domain.scaling import (
    Backoff,
    CreatePods,
    DeletePod,
    DeleteStuckPod,
    Observation,
    Plan,
    PodObservation,
    Reason,
    RebuildPod,
    backoff_delay,
    desired_pods,
    plan,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
POOL = "pool-aaaaaaaaaaaaaaaa"
CURRENT = "h-current"
OLD = "h-old"
ready, pending, starting = PodState.ready, PodState.pending, PodState.starting
draining, terminating, failed = PodState.draining, PodState.terminating, PodState.failed

# Monday 11:00-14:00 UTC: active at NOW.
WINDOW = FreezeSchedule(from_time="11:00", to_time="14:00", weekdays=[1], timezone="UTC")
NO_NEW = WINDOW.model_copy(update={"policy": FreezePolicy.no_new_tasks})
THAWED = freeze_state([], now=NOW, default_tz="UTC", unfreeze_until=None)
FROZEN = freeze_state([WINDOW], now=NOW, default_tz="UTC", unfreeze_until=None)
FROZEN_NO_NEW = freeze_state([NO_NEW], now=NOW, default_tz="UTC", unfreeze_until=None)
LIFTED = freeze_state(
    [WINDOW], now=NOW, default_tz="UTC", unfreeze_until=NOW + timedelta(minutes=30)
)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def pod(
    name: str,
    state: PodState = ready,
    *,
    busy: int = 0,
    reserved: int = 0,
    slots: int = 4,
    config_hash: str | None = CURRENT,
    age: float = 3600,
    idle_for: float = 600,
    ready_for: float | None = None,
    k8s_reason: str | None = None,
) -> PodObservation:
    """A Pod created ``age`` seconds ago, idle for ``idle_for`` seconds unless it has work, its
    agent registered ``ready_for`` seconds ago (None: not known)."""
    used = busy + reserved
    return PodObservation(
        name=name,
        state=state,
        config_hash=config_hash,
        created_at=ago(age),
        idle_since=None if used else ago(min(idle_for, age)),
        busy=busy,
        reserved=reserved,
        idle=max(slots - used, 0),
        k8s_reason=k8s_reason,
        ready_at=None if ready_for is None else ago(ready_for),
    )


def observe(
    *pods: PodObservation,
    queued: int = 0,
    freeze: FreezeState = THAWED,
    backoff: Backoff | None = None,
    boundary: datetime | None = None,
    **config: Any,
) -> Observation:
    return Observation(
        pool_id=POOL,
        config=PoolConfig(**config),
        config_hash=CURRENT,
        freeze=freeze,
        queued=queued,
        pods=pods,
        backoff=backoff or Backoff(),
        next_freeze_boundary=boundary,
    )


def brief(result: Plan) -> list[str]:
    """The actions in a line each: 'create 2 scale_up', 'delete p1 freeze', ..."""
    lines = []
    for action in result.actions:
        match action:
            case CreatePods(count=count):
                lines.append(f"create {count} {action.reason}")
            case DeleteStuckPod(name=name, k8s_reason=why):
                lines.append(f"stuck {name} {why}")
            case DeletePod(name=name):
                lines.append(f"delete {name} {action.reason}")
            case RebuildPod(name=name):
                lines.append(f"rebuild {name} {action.reason}")
    return lines


def holds(result: Plan) -> set[Reason]:
    return {hold.reason for hold in result.holds}


# -- the rules as a table ----------------------------------------------------------------------

CASES: list[Any] = [
    # id, observation, expected actions, desired Pods
    ("steady", observe(pod("p1")), [], 1),
    ("scale-from-zero", observe(queued=1, min_replicas=0), ["create 1 scale_up"], 1),
    ("zero-stays-zero", observe(min_replicas=0), [], 0),
    (
        "burst-40-tasks-4-slots-max-5",
        observe(queued=40, min_replicas=0, max_replicas=5, slots_per_pod=4),
        ["create 5 scale_up"],
        5,
    ),
    (
        "burst-counts-pending-pods",
        observe(pod("p1", pending, age=5), pod("p2", pending, age=5), queued=40, max_replicas=5),
        ["create 3 scale_up"],
        5,
    ),
    (
        "pending-pod-is-capacity-to-come",
        observe(pod("p1", pending, age=1), queued=4, min_replicas=0),
        [],
        1,
    ),
    (
        "starting-pod-is-capacity",
        observe(pod("p1", starting, age=30), queued=3, min_replicas=0),
        [],
        1,
    ),
    ("min-replicas", observe(min_replicas=2), ["create 2 min_replicas"], 2),
    ("queued-above-min", observe(queued=9, min_replicas=2), ["create 3 scale_up"], 3),
    ("min-idle-slots", observe(pod("p1", busy=4), min_idle_slots=2), ["create 1 scale_up"], 2),
    ("min-idle-slots-already-free", observe(pod("p1", busy=2), min_idle_slots=2), [], 1),
    ("reserved-is-demand", observe(pod("p1", reserved=4), queued=1), ["create 1 scale_up"], 2),
    (
        "draining-work-is-not-demand",
        observe(pod("p1", draining, busy=4), min_replicas=0, max_replicas=3, queued=1),
        ["create 1 scale_up"],
        1,
    ),
    ("delay-not-reached", observe(pod("p1", idle_for=30), min_replicas=0), [], 0),
    (
        "delay-reached",
        observe(pod("p1", idle_for=60), min_replicas=0),
        ["delete p1 scale_down"],
        0,
    ),
    (
        # Created 100 s ago and idle since, but ready only 20 s ago: the delay counts from ready.
        "delay-counts-from-ready-not-from-creation",
        observe(pod("p1", age=100, idle_for=100, ready_for=20), min_replicas=0),
        [],
        0,
    ),
    (
        "delay-reached-since-ready",
        observe(pod("p1", age=100, idle_for=100, ready_for=60), min_replicas=0),
        ["delete p1 scale_down"],
        0,
    ),
    (
        # Served after it became ready: the last task's end is what counts.
        "delay-counts-from-the-last-task-after-ready",
        observe(pod("p1", age=900, idle_for=30, ready_for=800), min_replicas=0),
        [],
        0,
    ),
    ("busy-pod-kept", observe(pod("p1", busy=1), min_replicas=0), [], 1),
    ("reserved-pod-kept", observe(pod("p1", reserved=1), min_replicas=0), [], 1),
    (
        "never-below-desired-newest-first",
        observe(pod("p1", age=9000), pod("p2", age=100), pod("p3", age=5000), queued=4),
        ["delete p2 scale_down", "delete p3 scale_down"],
        1,
    ),
    (
        "outdated-first",
        observe(pod("p1", age=9000, config_hash=OLD), pod("p2", age=100)),
        ["delete p1 scale_down"],
        1,
    ),
    (
        "max-lowered",
        observe(pod("p1", age=900), pod("p3", age=100), pod("p2"), queued=12, max_replicas=2),
        ["delete p3 scale_down"],
        2,
    ),
    (
        "starting-pod-not-scaled-down",
        observe(pod("p1", starting, age=200, idle_for=900), min_replicas=0),
        [],
        0,
    ),
    (
        # Running, but its agent never registered: replaced like a Pod stuck pending.
        "starting-past-the-timeout-is-stuck",
        observe(pod("p1", starting, age=300, k8s_reason="AgentNotRegistered")),
        ["stuck p1 AgentNotRegistered"],
        1,
    ),
    (
        "rebuild-outdated-idle-at-once",
        observe(pod("p1", config_hash=OLD, idle_for=1)),
        ["rebuild p1 config_changed"],
        1,
    ),
    (
        "unknown-hash-is-outdated",
        observe(pod("p1", config_hash=None)),
        ["rebuild p1 config_changed"],
        1,
    ),
    ("outdated-busy-waits", observe(pod("p1", busy=1, config_hash=OLD)), [], 1),
    (
        "freeze-scale-to-zero",
        observe(pod("p1", idle_for=1), pod("p2", busy=1), queued=5, freeze=FROZEN),
        ["delete p1 freeze"],
        0,
    ),
    (
        "freeze-no-new-tasks",
        observe(pod("p1", idle_for=1), pod("p2", reserved=1), queued=5, freeze=FROZEN_NO_NEW),
        ["delete p1 freeze"],
        0,
    ),
    ("freeze-creates-nothing-not-for-min", observe(min_replicas=2, freeze=FROZEN), [], 0),
    (
        "freeze-deletes-below-min",
        observe(pod("p1"), pod("p2"), min_replicas=2, freeze=FROZEN),
        ["delete p1 freeze", "delete p2 freeze"],
        0,
    ),
    (
        "freeze-deletes-pending-rebuilds-nothing",
        observe(pod("p1", pending, age=5), pod("p2", config_hash=OLD), freeze=FROZEN),
        ["delete p1 freeze", "delete p2 freeze"],
        0,
    ),
    (
        "freeze-keeps-busy-outdated",
        observe(pod("p1", busy=2, config_hash=OLD), freeze=FROZEN),
        [],
        0,
    ),
    (
        "one-time-unfreeze-lifts-freeze",
        observe(pod("p1", config_hash=OLD), queued=8, freeze=LIFTED),
        ["rebuild p1 config_changed", "create 1 scale_up"],
        2,
    ),
    (
        "pending-timeout",
        observe(pod("p1", pending, age=300, k8s_reason="ImagePullBackOff")),
        ["stuck p1 ImagePullBackOff"],
        1,
    ),
    ("pending-within-timeout", observe(pod("p1", pending, age=299)), [], 1),
    (
        "backoff-holds-creation",
        observe(backoff=Backoff(2, ago(5))),
        [],
        1,
    ),
    ("backoff-over", observe(backoff=Backoff(2, ago(20))), ["create 1 min_replicas"], 1),
    (
        "backoff-holds-rebuild",
        observe(pod("p1", config_hash=OLD), backoff=Backoff(1, ago(5))),
        [],
        1,
    ),
    (
        "backoff-reset-by-a-newer-ready-pod",
        observe(pod("p1", age=60), queued=5, backoff=Backoff(3, ago(100))),
        ["create 1 scale_up"],
        2,
    ),
    (
        "drained-pod-deleted",
        observe(pod("p1", draining, idle_for=1), pod("p2")),
        ["delete p1 drained"],
        1,
    ),
    ("draining-busy-kept", observe(pod("p1", draining, busy=1), min_replicas=0), [], 0),
    (
        "ended-pod-cleaned-and-replaced-after-backoff",
        observe(pod("p1", failed, age=50)),
        ["delete p1 pod_ended"],
        1,
    ),
    ("terminating-ignored", observe(pod("p1", terminating), min_replicas=0), [], 0),
]


@pytest.mark.parametrize(
    ("observation", "expected", "desired"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rules(observation: Observation, expected: list[str], desired: int) -> None:
    result = plan(observation, NOW)
    assert brief(result) == expected
    assert result.desired_pods == desired


@pytest.mark.parametrize(
    ("observation", "reasons"),
    [
        pytest.param(observe(queued=40, max_replicas=5), {Reason.max_replicas}, id="max"),
        pytest.param(
            observe(pod("p1", idle_for=30), min_replicas=0), {Reason.scale_down_delay}, id="delay"
        ),
        pytest.param(
            observe(pod("p1", busy=1, config_hash=OLD)), {Reason.outdated_busy}, id="outdated-busy"
        ),
        pytest.param(observe(freeze=FROZEN), {Reason.frozen}, id="frozen"),
        pytest.param(observe(backoff=Backoff(2, ago(5))), {Reason.backoff}, id="backoff"),
        pytest.param(observe(pod("p1")), set(), id="nothing-held"),
    ],
)
def test_holds_say_why_nothing_happened(observation: Observation, reasons: set[Reason]) -> None:
    assert holds(plan(observation, NOW)) == reasons


@pytest.mark.parametrize(
    ("observation", "wake_at"),
    [
        pytest.param(observe(pod("p1")), None, id="nothing-pending"),
        pytest.param(
            observe(pod("p1", idle_for=30), min_replicas=0), ago(-30), id="scale-down-delay"
        ),
        pytest.param(
            observe(pod("p1", idle_for=30), pod("p2", busy=1), min_replicas=0),
            ago(-30),
            id="delay-of-the-surplus-pod",
        ),
        # Desired 1: the idle Pod stays whatever its delay, so its expiry changes nothing.
        pytest.param(observe(pod("p1", idle_for=30)), None, id="delay-moot"),
        pytest.param(
            observe(pod("p1", age=100, idle_for=100, ready_for=20), min_replicas=0),
            ago(-40),
            id="scale-down-delay-from-ready",
        ),
        pytest.param(observe(pod("p1", pending, age=100)), ago(-200), id="pending-timeout"),
        pytest.param(observe(queued=1), ago(-300), id="timeout-of-the-created-pods"),
        pytest.param(
            observe(pod("p1", pending, age=300, k8s_reason="Unschedulable")),
            ago(-10),
            id="backoff-after-stuck",
        ),
        pytest.param(observe(backoff=Backoff(3, ago(5))), ago(-35), id="backoff-held"),
        pytest.param(observe(pod("p1"), backoff=Backoff(3, ago(5))), None, id="backoff-moot"),
        pytest.param(observe(pod("p1"), freeze=FROZEN), FROZEN.until, id="freeze-ends"),
        pytest.param(observe(pod("p1"), freeze=LIFTED), ago(-1800), id="unfreeze-ends"),
        pytest.param(observe(pod("p1"), boundary=ago(-60)), ago(-60), id="next-window"),
        pytest.param(
            observe(pod("p1", pending, age=100), boundary=ago(-60)), ago(-60), id="earliest-wins"
        ),
    ],
)
def test_wake_at(observation: Observation, wake_at: datetime | None) -> None:
    assert plan(observation, NOW).wake_at == wake_at


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (7, 300), (10_000, 300)],
)
def test_backoff_delay_doubles_up_to_five_minutes(failures: int, seconds: int) -> None:
    assert backoff_delay(failures) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        pytest.param(
            observe(pod("p1", pending, age=300)), Backoff(1, NOW), id="first-stuck-starts-it"
        ),
        pytest.param(
            observe(pod("p1", pending, age=310), backoff=Backoff(2, ago(400))),
            Backoff(3, NOW),
            id="a-new-round-doubles-it",
        ),
        pytest.param(
            observe(pod("p1", pending, age=400), backoff=Backoff(2, ago(390))),
            Backoff(2, ago(390)),
            id="same-round-counts-once",
        ),
        pytest.param(
            observe(pod("p1", age=60), backoff=Backoff(4, ago(100))),
            Backoff(0, ago(100)),
            id="newer-ready-pod-resets",
        ),
        pytest.param(
            observe(pod("p1", age=200), backoff=Backoff(4, ago(100))),
            Backoff(4, ago(100)),
            id="older-ready-pod-proves-nothing",
        ),
        pytest.param(observe(pod("p1", failed, age=5)), Backoff(1, NOW), id="ended-pod-counts"),
    ],
)
def test_backoff_state_to_store(observation: Observation, expected: Backoff) -> None:
    assert plan(observation, NOW).backoff == expected


def test_stuck_pod_reports_the_kubernetes_reason() -> None:
    stuck = replace(
        pod("p1", pending, age=301, k8s_reason="FailedScheduling"),
        k8s_message="0/3 nodes are available: 3 Insufficient cpu.",
    )
    (action,) = plan(observe(stuck), NOW).actions
    assert isinstance(action, DeleteStuckPod)
    assert action.k8s_reason == "FailedScheduling"
    assert "0/3 nodes are available" in action.message
    assert "301s" in action.message


def test_pending_timeout_then_backoff_then_replacement() -> None:
    stuck = observe(pod("p1", pending, age=300, k8s_reason="ErrImagePull"))
    first = plan(stuck, NOW)
    assert brief(first) == ["stuck p1 ErrImagePull"]
    assert first.pods_after == 0
    gone = apply(stuck, first, NOW)
    assert brief(plan(gone, NOW + timedelta(seconds=9))) == []
    later = plan(gone, NOW + timedelta(seconds=10))
    assert brief(later) == ["create 1 min_replicas"]


def test_summary_is_the_decision_log_record() -> None:
    observation = observe(
        pod("p1", busy=3, reserved=1),
        pod("p2", pending, age=5),
        pod("p3", config_hash=OLD),
        queued=9,
        min_replicas=1,
        max_replicas=4,
    )
    summary = plan(observation, NOW).summary()
    json.dumps(summary)
    inputs = summary["inputs"]
    assert (inputs["queued"], inputs["busy"], inputs["reserved"], inputs["idle"]) == (9, 3, 1, 8)
    assert inputs["pods"] == {
        "pending": 1,
        "starting": 0,
        "ready": 2,
        "draining": 0,
        "terminating": 0,
        "deleted": 0,
        "failed": 0,
    }
    assert (inputs["outdated"], inputs["min_replicas"], inputs["max_replicas"]) == (1, 1, 4)
    assert inputs["freeze"] == {
        "active": False,
        "policy": None,
        "until": None,
        "lifted_until": None,
    }
    assert (summary["demand_slots"], summary["desired_pods"]) == (13, 4)
    assert (summary["capacity_pods"], summary["capacity_slots"], summary["pods_after"]) == (
        3,
        12,
        4,
    )
    assert [a["action"] for a in summary["actions"]] == ["rebuild_pod", "create_pods"]
    assert summary["actions"][1]["count"] == 1
    assert summary["actions"][1]["reason"] == "scale_up"


def test_summary_records_the_freeze() -> None:
    summary = plan(observe(freeze=FROZEN_NO_NEW), NOW).summary()
    assert summary["inputs"]["freeze"]["active"] is True
    assert summary["inputs"]["freeze"]["policy"] == "no_new_tasks"
    assert summary["inputs"]["freeze"]["until"] == "2026-01-05T14:00:00Z"
    assert summary["holds"][0]["reason"] == "frozen"


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(observe(), NOW.replace(tzinfo=None))


def test_pod_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        observe(pod("p1"), pod("p1"))


@pytest.mark.parametrize(
    ("demand", "expected"), [(0, 1), (1, 1), (4, 1), (5, 2), (40, 5), (400, 5)]
)
def test_desired_pods_clamps(demand: int, expected: int) -> None:
    assert desired_pods(demand, PoolConfig(min_replicas=1, max_replicas=5)) == expected


# -- properties --------------------------------------------------------------------------------


def apply(observation: Observation, result: Plan, now: datetime) -> Observation:
    """The world after the executor did ``result``: deleted Pods terminate, new ones are pending."""
    gone = set(result.deleted) | set(result.rebuilt)
    slots = observation.config.slots_per_pod
    pods = [replace(p, state=terminating) if p.name in gone else p for p in observation.pods]
    for i in range(result.created + len(result.rebuilt)):
        pods.append(
            PodObservation(
                name=f"new-{i}",
                state=pending,
                config_hash=observation.config_hash,
                created_at=now,
                idle_since=now,
                idle=slots,
            )
        )
    return replace(observation, pods=tuple(pods), backoff=result.backoff)


def capacity(observation: Observation) -> list[PodObservation]:
    return [p for p in observation.pods if p.state in (pending, starting, ready)]


@st.composite
def pod_observations(draw: st.DrawFn, name: str) -> PodObservation:
    # Mostly idle Pods in capacity states, so scale-down and rebuild are common. Some inputs are
    # inconsistent on purpose (busy slots and an idle_since): no promise may depend on them.
    busy, reserved = (draw(st.sampled_from([0, 0, 0, 1, 4])) for _ in range(2))
    consistent = draw(st.integers(0, 4)) > 0
    since = draw(st.integers(0, 400).map(ago) | st.none())
    return PodObservation(
        name=name,
        state=draw(st.sampled_from([ready, ready, ready, pending, starting, *PodState])),
        config_hash=draw(st.sampled_from([CURRENT, CURRENT, OLD, None])),
        created_at=ago(draw(st.integers(0, 900))),
        idle_since=None if consistent and busy + reserved else since,
        busy=busy,
        reserved=reserved,
        idle=draw(st.integers(0, 4)),
        k8s_reason=draw(st.sampled_from([None, "Unschedulable", "ImagePullBackOff"])),
        ready_at=draw(st.none() | st.integers(0, 400).map(ago)),
    )


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    low = draw(st.integers(0, 3))
    config = PoolConfig(
        min_replicas=low,
        max_replicas=draw(st.integers(max(low, 1), 6)),
        slots_per_pod=draw(st.integers(1, 4)),
        scale_down_delay_seconds=draw(st.integers(0, 300)),
        min_idle_slots=draw(st.integers(0, 4)),
        pending_timeout_seconds=draw(st.integers(10, 600)),
    )
    count = draw(st.integers(0, 7))
    last_failure = draw(st.none() | st.integers(0, 600).map(ago))
    return Observation(
        pool_id=POOL,
        config=config,
        config_hash=CURRENT,
        freeze=draw(st.sampled_from([THAWED, THAWED, THAWED, FROZEN, FROZEN_NO_NEW, LIFTED])),
        queued=draw(st.sampled_from([0, 0, 1, 3, 9, 30])),
        pods=tuple(draw(pod_observations(f"p{i}")) for i in range(count)),
        backoff=Backoff(draw(st.sampled_from([0, 0, 1, 3, 6])), last_failure),
        next_freeze_boundary=draw(st.none() | st.integers(1, 5000).map(lambda s: ago(-s))),
    )


@given(observations())
def test_never_deletes_or_rebuilds_a_pod_with_busy_or_reserved_slots(obs: Observation) -> None:
    result = plan(obs, NOW)
    by_name = {p.name: p for p in obs.pods}
    touched = [*result.deleted, *result.rebuilt]
    assert len(touched) == len(set(touched))
    for name in touched:
        assert by_name[name].busy == 0
        assert by_name[name].reserved == 0
        assert by_name[name].state is not terminating


@given(observations())
def test_never_creates_or_rebuilds_inside_an_active_freeze(obs: Observation) -> None:
    result = plan(obs, NOW)
    if obs.freeze.active:
        assert result.created == 0
        assert result.rebuilt == ()
        # What stays offering slots is only what holds work.
        assert all(not p.all_idle for p in capacity(apply(obs, result, NOW)))


@given(observations())
def test_pods_after_the_plan(obs: Observation) -> None:
    """Outside a freeze: the plan never grows the pool past max_replicas nor shrinks it below
    desired (so below min_replicas); it reaches desired unless the back-off holds creation; and
    it stays above desired only while no remaining Pod may be scaled down (busy, reserved, not
    ready, or idle for less than the delay). A plan never both creates and scales down."""
    result = plan(obs, NOW)
    after = capacity(apply(obs, result, NOW))
    assert len(after) == result.pods_after
    scaled_down = [a for a in result.actions if a.reason is Reason.scale_down]
    assert not (result.created and scaled_down)
    if obs.freeze.active:
        return
    cfg, desired = obs.config, result.desired_pods
    assert cfg.min_replicas <= desired <= cfg.max_replicas
    before = len([p for p in capacity(obs) if p.name not in result.deleted])
    assert len(after) <= max(cfg.max_replicas, before)
    if result.created:
        assert len(after) == desired
    if scaled_down:
        assert len(after) >= desired
    if not result.backoff.active(NOW):
        assert len(after) >= desired >= cfg.min_replicas
    delay = timedelta(seconds=cfg.scale_down_delay_seconds)
    if len(after) > desired:
        for p in after:
            idle_for = p.idle_for(NOW)
            assert p.state is not ready or idle_for is None or idle_for < delay


@given(observations())
def test_no_pod_is_scaled_down_before_it_could_serve_for_the_whole_delay(obs: Observation) -> None:
    """A scaled-down Pod has been ready and idle for the whole scale-down delay: neither the
    time before its agent registered nor the time it held work counts."""
    result = plan(obs, NOW)
    by_name = {p.name: p for p in obs.pods}
    delay = timedelta(seconds=obs.config.scale_down_delay_seconds)
    for action in result.actions:
        if action.reason is Reason.scale_down and isinstance(action, DeletePod):
            scaled = by_name[action.name]
            assert scaled.idle_since is not None
            assert scaled.idle_since <= NOW - delay
            assert scaled.ready_at is None or scaled.ready_at <= NOW - delay


def test_a_rebuilt_pod_that_starts_slowly_still_gets_the_whole_delay_to_serve() -> None:
    """The churn of issue 16: an outdated idle Pod is rebuilt; its replacement takes 45 s to
    start (an image pull), and with the 60 s delay it used to be deleted 15 s after it became
    ready, before any task could reach it. Now it stays for 60 s from ready."""
    outdated = pod("old", config_hash=OLD, age=600, idle_for=5, ready_for=590)
    old = observe(outdated, min_replicas=0, scale_down_delay_seconds=60)
    rebuild = plan(old, NOW)
    assert brief(rebuild) == ["rebuild old config_changed"]
    (replacement,) = [p for p in apply(old, rebuild, NOW).pods if p.state is pending]

    def at(seconds: float) -> datetime:
        return NOW + timedelta(seconds=seconds)

    started = replace(replacement, state=ready, ready_at=at(45))
    world = replace(old, pods=(started,))
    for seconds in (60, 90, 104):  # 15 s, 45 s and 59 s after it became ready
        assert brief(plan(world, at(seconds))) == [], seconds
    assert brief(plan(world, at(105))) == ["delete new-0 scale_down"]


@given(observations())
def test_pool_of_idle_ready_pods_lands_exactly_on_desired(obs: Observation) -> None:
    """With every Pod ready, current, idle past the delay and no back-off: min <= pods <= max."""
    pods = tuple(
        replace(
            p,
            state=ready,
            busy=0,
            reserved=0,
            config_hash=CURRENT,
            idle_since=ago(10_000),
            ready_at=None,
        )
        for p in obs.pods
    )
    obs = replace(obs, pods=pods, freeze=THAWED, backoff=Backoff())
    result = plan(obs, NOW)
    after = len(capacity(apply(obs, result, NOW)))
    assert after == result.desired_pods
    assert obs.config.min_replicas <= after <= obs.config.max_replicas


@given(observations(), st.floats(0, 1, exclude_max=True))
def test_plan_is_stable_until_wake_at(obs: Observation, fraction: float) -> None:
    """Planning again on the plan's own result proposes nothing (no flapping, no double
    creation), and stays so at any instant before ``wake_at`` when no event happens."""
    result = plan(obs, NOW)
    settled = apply(obs, result, NOW)
    assert plan(settled, NOW).actions == ()
    horizon = (result.wake_at or NOW + timedelta(days=1)) - NOW
    later = NOW + timedelta(microseconds=int(horizon / timedelta(microseconds=1) * fraction))
    assert later < NOW + horizon
    assert brief(plan(settled, later)) == []


# -- creations in flight (asked of the runtime, not listed yet) ---------------------------------


def fresh_pending(observation: Observation, count: int) -> Observation:
    """``observation`` with ``count`` Pods created just now, pending, current and idle: what the
    creations in flight will be once they are listed."""
    slots = observation.config.slots_per_pod
    coming = tuple(
        PodObservation(
            name=f"coming-{i}",
            state=pending,
            config_hash=observation.config_hash,
            created_at=NOW,
            idle_since=NOW,
            idle=slots,
        )
        for i in range(count)
    )
    return replace(observation, pods=(*observation.pods, *coming))


def test_creations_in_flight_count_as_pods_that_are_coming() -> None:
    first = plan(observe(queued=40, max_replicas=6, slots_per_pod=4), NOW)
    assert brief(first) == ["create 6 scale_up"]
    # The next pass sees none of them listed yet, and more work queued: nothing twice.
    result = plan(replace(observe(queued=60, max_replicas=6, slots_per_pod=4), creating=6), NOW)
    assert brief(result) == []
    assert result.capacity_pods == 6
    assert result.pods_after == 6
    assert [h.reason for h in result.holds] == [Reason.max_replicas]
    some = plan(replace(observe(queued=20, slots_per_pod=4), creating=3), NOW)
    assert brief(some) == ["create 2 scale_up"]
    assert "3 exist or are coming: creating 2" in some.actions[0].message
    assert some.summary()["inputs"]["creating"] == 3


def test_creations_in_flight_bring_the_pending_timeout_into_wake_at() -> None:
    result = plan(replace(observe(queued=1), creating=1), NOW)
    assert brief(result) == []
    assert result.wake_at == NOW + timedelta(seconds=PoolConfig().pending_timeout_seconds)


def test_creating_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="creating"):
        replace(observe(), creating=-1)


@given(observations(), st.integers(0, 8))
def test_a_creation_in_flight_counts_as_a_pending_pod(obs: Observation, creating: int) -> None:
    """Outside a freeze, a plan with ``creating`` Pods in flight does what it would do with as
    many fresh pending Pods listed: it creates, deletes, rebuilds and holds the same."""
    if obs.freeze.active:
        return
    flying = plan(replace(obs, creating=creating), NOW)
    listed = plan(fresh_pending(obs, creating), NOW)
    assert flying.actions == listed.actions
    assert flying.holds == listed.holds
    assert flying.desired_pods == listed.desired_pods
    assert flying.pods_after == listed.pods_after
    assert flying.capacity_pods == listed.capacity_pods
    assert flying.capacity_slots == listed.capacity_slots
    assert flying.wake_at == listed.wake_at


@given(observations(), st.integers(0, 8))
def test_creations_in_flight_never_take_the_pool_past_max_replicas(
    obs: Observation, creating: int
) -> None:
    """Pods listed, in flight and created by the plan stay within max_replicas, unless the pool
    was past it before (then the plan creates nothing); frozen, nothing is created at all."""
    result = plan(replace(obs, creating=creating), NOW)
    before = len([p for p in capacity(obs) if p.name not in result.deleted]) + creating
    after = len(capacity(apply(obs, result, NOW))) + creating
    assert after == result.pods_after
    if result.created:
        assert after <= obs.config.max_replicas
        assert not obs.freeze.active
    assert after <= max(obs.config.max_replicas, before)
