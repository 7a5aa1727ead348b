"""The controller's decision: from what a pool looks like at ``now`` to what should be done.

``plan(observation, now)`` is pure (no I/O, no clock): the controller observes, calls it, applies
the returned actions and records ``Plan.summary()`` as the pool event that answers "why did this
pool scale?". Every action carries a machine-readable ``Reason`` and a sentence for people; every
rule that held something back (a freeze, the back-off, max_replicas, the scale-down delay, busy
outdated Pods) is a ``Hold`` with the same kind of reason.

Rules (product.md section 8), and the choices made where the specification is silent:

* Capacity is counted in Pods that will offer slots: ``pending``, ``starting`` and ``ready``.
  A Pod just created and still pending counts, so a pass that follows its own creation never
  creates it again (the classic scale-up storm). So does a creation still in flight
  (``Observation.creating``: asked of the runtime, not listed yet): it counts as a Pod that is
  pending, except that nothing can delete it before it exists. ``draining``, ``terminating``
  and ``failed`` Pods count neither as capacity nor, for their busy and reserved slots, as
  demand: their work is already housed, and counting it against Pods that do not count would
  create Pods for it.
* Demand = busy + reserved (on capacity Pods) + queued + min_idle_slots. ``queued`` must count
  only tasks that hold no slot yet (a reserved task is demand once, as its slot).
* Desired Pods = clamp(ceil(demand / slots_per_pod), min_replicas, max_replicas); max_replicas
  wins should min_replicas ever exceed it. Inside an active freeze the desired count is 0.
* Scale-down removes only ``ready`` Pods whose slots have all been idle for at least
  ``scale_down_delay_seconds``, never below desired. Idle time counts from the moment the Pod
  became ready (its agent registered) at the earliest, not from its creation: a Pod that took
  longer than the delay to start (a replacement made by a rebuild, a slow image pull) would
  otherwise be deleted the moment it could serve, and a rebuild would only churn. ``pending``
  and ``starting`` Pods are never scaled down: killing agents before they start is a known
  complaint (field notes, 2). Order: outdated Pods first, then the newest (placement packs tasks
  onto the oldest Pods on ties, so the newest are the ones it fills last), then by name so the
  plan is deterministic.
* Outside a freeze, every outdated Pod whose slots are all idle is rebuilt at once (any delay
  notwithstanding; the count is kept); an outdated busy Pod waits until it is idle.
* Inside an active freeze (one a one-time unfreeze has not lifted; ``FreezeState.active`` already
  says so) nothing is created or rebuilt, not even to reach min_replicas, and every capacity Pod
  whose slots are all idle is deleted at once, with both policies and without the scale-down
  delay: the delay damps flapping between scale-down and scale-up, and inside a freeze nothing
  scales up, while every minute an idle Pod lives is the cost the freeze exists to save. The
  policy only matters to the dispatcher (``no_new_tasks`` also stops placing queued tasks).
* Housekeeping, frozen or not: a ``draining`` Pod whose slots are all idle is deleted (a drain
  finished, or an earlier deletion did not go through), and so is a ``failed`` one (it ended).
* A ``pending`` Pod older than ``pending_timeout_seconds`` is deleted with its Kubernetes reason.
  Creation then backs off exponentially per pool: 10 s after the first failed round, doubling up
  to 5 min. A round is one pass that finds Pods stuck or ended that were created after the last
  recorded failure, so a batch of Pods stuck together, or a deletion retried, counts once. A
  ``ready`` Pod created after the last failure proves creation works again and resets the count.
  Rebuilds wait out the back-off too: replacing a working outdated Pod while new ones cannot
  start would destroy capacity. ``Plan.backoff`` is the state to store for the next pass.
* No Pod with a busy or reserved slot is ever deleted or rebuilt, whatever the inputs: a Pod is
  "all idle" only when it reports no busy and no reserved slot *and* an ``idle_since``.
* ``wake_at`` is the earliest instant after ``now`` at which the plan would change without a
  new event: a held scale-down's delay expiring, a pending timeout (also of the Pods this plan
  creates or that are in flight), a held creation's back-off ending, a freeze boundary or the
  end of an unfreeze.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

from slotpool.domain.config import PoolConfig
from slotpool.domain.freeze import FreezeState
from slotpool.domain.pods import EndCause, PodEnd, PodState

BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(minutes=5)
# The Pods that offer slots now or soon; the others are on their way out.
CAPACITY_STATES = frozenset({PodState.pending, PodState.starting, PodState.ready})


class Reason(StrEnum):
    """Why an action was proposed (the first group) or something was held back (the second)."""

    scale_up = "scale_up"
    min_replicas = "min_replicas"
    scale_down = "scale_down"
    config_changed = "config_changed"
    freeze = "freeze"
    pending_timeout = "pending_timeout"
    drained = "drained"
    pod_ended = "pod_ended"

    frozen = "frozen"
    backoff = "backoff"
    max_replicas = "max_replicas"
    scale_down_delay = "scale_down_delay"
    outdated_busy = "outdated_busy"


# Why a Pod that an action deletes ends, by the action's reason.
_ENDS = {
    Reason.scale_down: EndCause.scaled_down,
    Reason.config_changed: EndCause.replaced,
    Reason.freeze: EndCause.frozen,
    Reason.drained: EndCause.drained,
    Reason.pending_timeout: EndCause.not_started,
}


def end_of(reason: Reason) -> PodEnd:
    """The end written on a Pod deleted for ``reason`` (deleted by slotpool if none fits)."""
    return PodEnd(_ENDS.get(reason, EndCause.removed))


def backoff_delay(failures: int) -> timedelta:
    """How long creation waits after ``failures`` consecutive failed rounds (0: not at all)."""
    if failures <= 0:
        return timedelta(0)
    # The exponent is bounded so a huge count cannot build a huge integer; the cap is hit by 6.
    return min(BACKOFF_BASE * (1 << min(failures - 1, 16)), BACKOFF_CAP)


@dataclass(frozen=True)
class Backoff:
    """Per-pool back-off on Pod creation. ``last_failure_at`` stays as a watermark after a reset
    (``failures == 0``), so Pods of an already counted round are not counted again."""

    failures: int = 0
    last_failure_at: datetime | None = None

    @property
    def until(self) -> datetime | None:
        if self.failures <= 0 or self.last_failure_at is None:
            return None
        return self.last_failure_at + backoff_delay(self.failures)

    def active(self, now: datetime) -> bool:
        return self.until is not None and now < self.until

    def newer(self, created_at: datetime) -> bool:
        """Whether a Pod created at ``created_at`` belongs to a round not yet counted."""
        return self.last_failure_at is None or created_at > self.last_failure_at


@dataclass(frozen=True, kw_only=True)
class PodObservation:
    """One Pod as the controller sees it. ``idle_since`` is when its last busy or reserved slot
    became idle (its ``created_at`` if it never had one), None while any slot is busy or
    reserved. ``ready_at`` is when its agent registered (None: not yet, or not known): the
    earliest instant its idle time counts from. ``k8s_reason``/``k8s_message`` are why a pending
    Pod waits, if Kubernetes says."""

    name: str
    state: PodState
    config_hash: str | None
    created_at: datetime
    idle_since: datetime | None
    busy: int = 0
    reserved: int = 0
    idle: int = 0
    k8s_reason: str | None = None
    k8s_message: str | None = None
    ready_at: datetime | None = None

    def __post_init__(self) -> None:
        if min(self.busy, self.reserved, self.idle) < 0:
            raise ValueError(f"slot counts of {self.name} must not be negative")

    @property
    def used(self) -> int:
        return self.busy + self.reserved

    @property
    def all_idle(self) -> bool:
        # Both signals must agree: an inconsistent observation keeps the Pod.
        return self.used == 0 and self.idle_since is not None

    @property
    def idle_from(self) -> datetime | None:
        """Since when the Pod has been idle and able to serve; None while it holds work."""
        if not self.all_idle or self.idle_since is None:
            return None
        return max(self.idle_since, self.ready_at or self.idle_since)

    def idle_for(self, now: datetime) -> timedelta | None:
        idle_from = self.idle_from
        return None if idle_from is None else now - idle_from


@dataclass(frozen=True, kw_only=True)
class Observation:
    """Everything the decision depends on besides ``now``. ``next_freeze_boundary`` is
    ``freeze.next_boundary(...)`` for the pool, so the controller can sleep until then."""

    pool_id: str
    config: PoolConfig
    config_hash: str
    freeze: FreezeState
    queued: int = 0
    pods: tuple[PodObservation, ...] = ()
    backoff: Backoff = field(default_factory=Backoff)
    next_freeze_boundary: datetime | None = None
    creating: int = 0  # Pods asked of the runtime that are not among ``pods`` yet

    def __post_init__(self) -> None:
        if self.queued < 0:
            raise ValueError("queued must not be negative")
        if self.creating < 0:
            raise ValueError("creating must not be negative")
        names = [pod.name for pod in self.pods]
        if len(set(names)) != len(names):
            raise ValueError("pod names must be unique")

    def outdated(self, pod: PodObservation) -> bool:
        return pod.config_hash != self.config_hash

    def inputs(self) -> dict[str, Any]:
        """The compact record of what the decision saw, for the pool's event log (JSON-ready)."""
        by_state = {state.value: 0 for state in PodState}
        for pod in self.pods:
            by_state[pod.state.value] += 1
        cfg, freeze = self.config, self.freeze
        return {
            "queued": self.queued,
            "busy": sum(pod.busy for pod in self.pods),
            "reserved": sum(pod.reserved for pod in self.pods),
            "idle": sum(pod.idle for pod in self.pods),
            "pods": by_state,
            "creating": self.creating,
            "outdated": sum(1 for pod in self.pods if self.outdated(pod)),
            "min_replicas": cfg.min_replicas,
            "max_replicas": cfg.max_replicas,
            "slots_per_pod": cfg.slots_per_pod,
            "min_idle_slots": cfg.min_idle_slots,
            "freeze": {
                "active": freeze.active,
                "policy": freeze.policy.value if freeze.policy else None,
                "until": _iso(freeze.until),
                "lifted_until": _iso(freeze.lifted_until),
            },
            "backoff": {"failures": self.backoff.failures, "until": _iso(self.backoff.until)},
        }


@dataclass(frozen=True, kw_only=True)
class _Action:
    kind: ClassVar[str]
    reason: Reason
    message: str

    def describe(self) -> dict[str, Any]:
        fields = {k: v for k, v in vars(self).items() if k not in ("reason", "message")}
        return {"action": self.kind, **fields, "reason": self.reason.value, "message": self.message}


@dataclass(frozen=True, kw_only=True)
class CreatePods(_Action):
    kind: ClassVar[str] = "create_pods"
    count: int


@dataclass(frozen=True, kw_only=True)
class DeletePod(_Action):
    """Delete a Pod whose slots are all idle (the executor marks it draining first)."""

    kind: ClassVar[str] = "delete_pod"
    name: str


@dataclass(frozen=True, kw_only=True)
class RebuildPod(_Action):
    """Delete an idle outdated Pod and create one with the current configuration."""

    kind: ClassVar[str] = "rebuild_pod"
    name: str


@dataclass(frozen=True, kw_only=True)
class DeleteStuckPod(_Action):
    kind: ClassVar[str] = "delete_stuck_pod"
    name: str
    k8s_reason: str | None


Action = CreatePods | DeletePod | RebuildPod | DeleteStuckPod
# The ``action`` of the pool event recording a hold when it starts.
HOLD = "hold"
# The pool events that are the controller's scaling decisions (others record token changes...).
DECISION_ACTIONS = frozenset(
    {CreatePods.kind, DeletePod.kind, RebuildPod.kind, DeleteStuckPod.kind, HOLD}
)


@dataclass(frozen=True, kw_only=True)
class Hold:
    """Something the plan did not do, why, and (when known) until when."""

    reason: Reason
    message: str
    until: datetime | None = None

    def describe(self) -> dict[str, Any]:
        return {"reason": self.reason.value, "message": self.message, "until": _iso(self.until)}


@dataclass(frozen=True, kw_only=True)
class Plan:
    pool_id: str
    at: datetime
    actions: tuple[Action, ...]
    holds: tuple[Hold, ...]
    demand_slots: int
    desired_pods: int
    capacity_pods: int  # Pods offering slots now or soon, before the plan
    capacity_slots: int
    pods_after: int  # the same count once the plan is applied
    backoff: Backoff  # to store for the next pass
    wake_at: datetime | None
    inputs: dict[str, Any] = field(compare=False)

    @property
    def created(self) -> int:
        return sum(a.count for a in self.actions if isinstance(a, CreatePods))

    @property
    def deleted(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actions if isinstance(a, DeletePod | DeleteStuckPod))

    @property
    def rebuilt(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actions if isinstance(a, RebuildPod))

    def summary(self) -> dict[str, Any]:
        """The decision as the events API stores it: inputs, numbers, actions, holds."""
        return {
            "inputs": self.inputs,
            "demand_slots": self.demand_slots,
            "desired_pods": self.desired_pods,
            "capacity_pods": self.capacity_pods,
            "capacity_slots": self.capacity_slots,
            "pods_after": self.pods_after,
            "actions": [action.describe() for action in self.actions],
            "holds": [hold.describe() for hold in self.holds],
            "wake_at": _iso(self.wake_at),
        }


@dataclass(frozen=True)
class _Decision:
    actions: tuple[Action, ...]
    holds: tuple[Hold, ...]
    desired: int
    pods_after: int
    remaining: tuple[PodObservation, ...]  # capacity Pods the plan leaves in place


def plan(observation: Observation, now: datetime) -> Plan:
    """Decide what to do with the pool at ``now`` (timezone-aware)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now.isoformat()}")
    obs, cfg = observation, observation.config
    live = [pod for pod in obs.pods if pod.state in CAPACITY_STATES]
    stuck = [pod for pod in live if _stuck(pod, cfg, now)]
    kept = [pod for pod in live if pod not in stuck]
    backoff = _next_backoff(obs, stuck, now)
    demand = sum(pod.used for pod in kept) + obs.queued + cfg.min_idle_slots
    decide = _frozen if obs.freeze.active else _thawed
    decision = decide(obs, kept=kept, demand=demand, backoff=backoff, now=now)
    actions = (*_housekeeping(obs.pods), *(_unstick(p, now) for p in stuck), *decision.actions)
    return Plan(
        pool_id=obs.pool_id,
        at=now,
        actions=actions,
        holds=decision.holds,
        demand_slots=demand,
        desired_pods=decision.desired,
        capacity_pods=len(live) + obs.creating,
        capacity_slots=sum((pod.used + pod.idle) or cfg.slots_per_pod for pod in kept)
        + obs.creating * cfg.slots_per_pod,
        pods_after=decision.pods_after,
        backoff=backoff,
        wake_at=_wake_at(obs, decision, now),
        inputs=obs.inputs(),
    )


def pods_for(demand: int, slots_per_pod: int) -> int:
    return -(-demand // slots_per_pod)


def desired_pods(demand: int, config: PoolConfig) -> int:
    wanted = max(pods_for(demand, config.slots_per_pod), config.min_replicas)
    return min(wanted, config.max_replicas)


def _stuck(pod: PodObservation, cfg: PoolConfig, now: datetime) -> bool:
    """Pending (not scheduled or not started), or running with an agent that never registered
    (``starting``), for longer than ``pending_timeout_seconds``."""
    timeout = timedelta(seconds=cfg.pending_timeout_seconds)
    waiting = pod.state in (PodState.pending, PodState.starting)
    return waiting and pod.all_idle and now - pod.created_at >= timeout


def _next_backoff(obs: Observation, stuck: Sequence[PodObservation], now: datetime) -> Backoff:
    current = obs.backoff
    if any(pod.state is PodState.ready and current.newer(pod.created_at) for pod in obs.pods):
        current = Backoff(0, current.last_failure_at)
    ended = [pod for pod in obs.pods if pod.state is PodState.failed]
    if any(current.newer(pod.created_at) for pod in (*stuck, *ended)):
        return Backoff(current.failures + 1, now)
    return current


def _housekeeping(pods: Iterable[PodObservation]) -> list[Action]:
    actions: list[Action] = []
    for pod in pods:
        if pod.state is PodState.draining and pod.all_idle:
            text = f"{pod.name} is draining and all its slots are idle"
            actions.append(DeletePod(name=pod.name, reason=Reason.drained, message=text))
        elif pod.state.ended and pod.all_idle:
            text = f"{pod.name} has ended (failed or vanished) and holds no work"
            actions.append(DeletePod(name=pod.name, reason=Reason.pod_ended, message=text))
    return actions


def _unstick(pod: PodObservation, now: datetime) -> DeleteStuckPod:
    why = ": ".join(part for part in (pod.k8s_reason, pod.k8s_message) if part)
    text = (
        f"{pod.name} has been {pod.state.value} for {_secs(now - pod.created_at)}, past the "
        f"pending timeout ({why or 'Kubernetes gave no reason'}); deleted, creation backs off"
    )
    return DeleteStuckPod(
        name=pod.name, k8s_reason=pod.k8s_reason, reason=Reason.pending_timeout, message=text
    )


def _frozen(
    obs: Observation,
    *,
    kept: Sequence[PodObservation],
    demand: int,
    backoff: Backoff,
    now: datetime,
) -> _Decision:
    idle = [pod for pod in kept if pod.all_idle]
    remaining = tuple(pod for pod in kept if not pod.all_idle)
    text = f"{obs.freeze.reason()}: idle Pods are deleted, none is created or rebuilt"
    actions = tuple(DeletePod(name=p.name, reason=Reason.freeze, message=text) for p in idle)
    held = (
        f"{obs.freeze.reason()}: no Pod is created or rebuilt ({obs.queued} tasks queued); "
        f"{len(remaining)} Pods with busy or reserved slots are kept"
    )
    hold = Hold(reason=Reason.frozen, message=held, until=obs.freeze.until)
    return _Decision(actions, (hold,), 0, len(remaining) + obs.creating, remaining)


def _thawed(
    obs: Observation,
    *,
    kept: Sequence[PodObservation],
    demand: int,
    backoff: Backoff,
    now: datetime,
) -> _Decision:
    desired = desired_pods(demand, obs.config)
    victims = _victims(obs, kept=kept, desired=desired, now=now)
    survivors = tuple(pod for pod in kept if pod not in victims)
    outdated = [pod for pod in survivors if obs.outdated(pod) and pod.all_idle]
    coming = len(survivors) + obs.creating  # in-flight creations count as pending Pods
    missing = max(desired - coming, 0)
    holds = [*_max_hold(obs.config, demand), *_delay_hold(obs, coming, survivors, desired, now)]
    holds += _outdated_busy_hold(obs, survivors)
    actions: list[Action] = [_scale_down(pod, obs, desired, now) for pod in victims]
    if backoff.active(now) and (missing or outdated):
        holds.append(_backoff_hold(backoff, missing, len(outdated)))
        missing = 0
    else:
        actions += [_rebuild(pod) for pod in outdated]
        actions += [_create(obs, missing, demand, coming)] if missing else []
    return _Decision(tuple(actions), tuple(holds), desired, coming + missing, survivors)


def _removable(pod: PodObservation, cfg: PoolConfig, now: datetime) -> bool:
    idle_for = pod.idle_for(now)
    delay = timedelta(seconds=cfg.scale_down_delay_seconds)
    return pod.state is PodState.ready and idle_for is not None and idle_for >= delay


def _victims(
    obs: Observation, *, kept: Sequence[PodObservation], desired: int, now: datetime
) -> list[PodObservation]:
    surplus = len(kept) + obs.creating - desired
    if surplus <= 0:
        return []
    removable = [pod for pod in kept if _removable(pod, obs.config, now)]
    removable.sort(key=lambda p: (not obs.outdated(p), -p.created_at.timestamp(), p.name))
    return removable[:surplus]


def _scale_down(pod: PodObservation, obs: Observation, desired: int, now: datetime) -> DeletePod:
    idle_for = pod.idle_for(now) or timedelta(0)
    what = "outdated Pod" if obs.outdated(pod) else "Pod"
    text = (
        f"{what} {pod.name} has been idle for {_secs(idle_for)} (delay "
        f"{obs.config.scale_down_delay_seconds}s) and the pool needs only {desired} Pods"
    )
    return DeletePod(name=pod.name, reason=Reason.scale_down, message=text)


def _rebuild(pod: PodObservation) -> RebuildPod:
    text = f"{pod.name} runs an outdated configuration and all its slots are idle"
    return RebuildPod(name=pod.name, reason=Reason.config_changed, message=text)


def _create(obs: Observation, count: int, demand: int, existing: int) -> CreatePods:
    cfg = obs.config
    by_demand = pods_for(demand, cfg.slots_per_pod)
    reason = Reason.min_replicas if by_demand < cfg.min_replicas else Reason.scale_up
    used = demand - obs.queued - cfg.min_idle_slots
    text = (
        f"{demand} slots wanted ({used} busy or reserved, {obs.queued} queued, "
        f"{cfg.min_idle_slots} kept idle) fill {by_demand} Pods of {cfg.slots_per_pod} slots; "
        f"desired {desired_pods(demand, cfg)} (min {cfg.min_replicas}, max {cfg.max_replicas}), "
        f"{existing} exist or are coming: creating {count}"
    )
    return CreatePods(count=count, reason=reason, message=text)


def _max_hold(cfg: PoolConfig, demand: int) -> list[Hold]:
    needed = pods_for(demand, cfg.slots_per_pod)
    if needed <= cfg.max_replicas:
        return []
    text = f"demand of {demand} slots needs {needed} Pods; max_replicas is {cfg.max_replicas}"
    return [Hold(reason=Reason.max_replicas, message=text)]


def _delay_hold(
    obs: Observation, coming: int, survivors: Sequence[PodObservation], desired: int, now: datetime
) -> list[Hold]:
    if coming <= desired:
        return []
    delay = timedelta(seconds=obs.config.scale_down_delay_seconds)
    waiting = [
        pod.idle_from + delay
        for pod in survivors
        if pod.state is PodState.ready and pod.idle_from is not None
    ]
    if not waiting:
        return []
    text = (
        f"{coming} Pods for {desired} desired: idle Pods are removed once idle for "
        f"{obs.config.scale_down_delay_seconds}s"
    )
    return [Hold(reason=Reason.scale_down_delay, message=text, until=min(waiting))]


def _outdated_busy_hold(obs: Observation, survivors: Sequence[PodObservation]) -> list[Hold]:
    busy = [pod.name for pod in survivors if obs.outdated(pod) and not pod.all_idle]
    if not busy:
        return []
    text = f"outdated Pods with busy or reserved slots are rebuilt once idle: {', '.join(busy)}"
    return [Hold(reason=Reason.outdated_busy, message=text)]


def _backoff_hold(backoff: Backoff, missing: int, outdated: int) -> Hold:
    text = (
        f"Pod creation backs off after {backoff.failures} failed rounds: "
        f"{missing} Pods to create and {outdated} to rebuild wait"
    )
    return Hold(reason=Reason.backoff, message=text, until=backoff.until)


def _wake_at(obs: Observation, decision: _Decision, now: datetime) -> datetime | None:
    timeout = timedelta(seconds=obs.config.pending_timeout_seconds)
    waiting = (PodState.pending, PodState.starting)  # both are judged by the pending timeout
    pending = [p.created_at for p in decision.remaining if p.state in waiting]
    if obs.creating or any(isinstance(a, CreatePods | RebuildPod) for a in decision.actions):
        pending.append(now)
    candidates = [
        *(hold.until for hold in decision.holds),
        *(created + timeout for created in pending),
        obs.next_freeze_boundary,
        obs.freeze.until,
        obs.freeze.lifted_until,
    ]
    return min((c for c in candidates if c is not None and c > now), default=None)


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _secs(span: timedelta) -> str:
    return f"{int(span.total_seconds())}s"
