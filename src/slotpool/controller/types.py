"""The values a pass hands from stage to stage, and what the controller remembers of a pool.

A pass is a pipeline (``reconciler.py``): the inventory (``Inventory``: what the runtime and the
books say) goes to ``domain.scaling.plan``, the plan to the executor (``Executed``: what each
action did), and all three to the record. Each stage takes values and returns one; none of them
is changed after it is made, so the pass report is assembled from them at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slotpool.domain.config import PoolConfig
from slotpool.domain.events import Outcome
from slotpool.domain.inventory import Adopt, Classified, Retire
from slotpool.domain.manifest import PodContext, pod_config_hash
from slotpool.domain.pools import Pool
from slotpool.domain.scaling import Action, Backoff, CreatePods, Observation, RebuildPod
from slotpool.runtime.base import PodRuntime

Holds = frozenset[tuple[str, str]]  # (reason, message) of the holds recorded last


@dataclass(frozen=True)
class PoolTarget:
    """The pool a pass is over and where its pods live, worked out once per pass (the Pod
    context is built here and nowhere else in the pass)."""

    pool: Pool
    config: PoolConfig
    runtime: PodRuntime
    context: PodContext

    @property
    def pool_id(self) -> str:
        return self.pool.pool_id

    @property
    def namespace(self) -> str:
        return self.context.namespace_for(self.config)

    @property
    def config_hash(self) -> str:
        """From the pool's stored Pod fields (no dump of the configuration per read)."""
        return self.pool.config_hash(self.context) or pod_config_hash(self.config, self.context)


@dataclass(frozen=True)
class PoolMemory:
    """What the controller remembers of a pool between passes. The back-off is also written to
    the pool's row and read back by the first pass after a restart; the holds are not (after a
    restart the current hold is recorded once more). ``secret_checked`` is monotonic time;
    ``failing`` says why the last pass failed before it could decide (the runtime failed);
    ``desired_pods`` is what the last plan wanted (the history sampler records it)."""

    backoff: Backoff
    holds: Holds = frozenset()
    secret_checked: float | None = None
    wake_at: datetime | None = None
    failing: str | None = None
    desired_pods: int | None = None

    @classmethod
    def first(cls, pool: Pool) -> PoolMemory:
        """Before this process's first pass over the pool: the back-off resumes from its row."""
        return cls(backoff=Backoff(pool.backoff_failures, pool.backoff_last_failure_at))

    def secret_due(self, monotonic_now: float, every: float) -> bool:
        return self.secret_checked is None or monotonic_now - self.secret_checked > every


@dataclass(frozen=True)
class Inventory:
    """What the runtime and the books said, once the books were brought up to date: the
    Secret's outcome, what the comparison found, and the observation the decision takes."""

    secret: str
    classified: Classified
    observation: Observation
    observed_at: datetime

    @property
    def adopted(self) -> list[str]:
        return [adopt.name for adopt in self.classified.of_kind(Adopt)]

    @property
    def ended(self) -> list[str]:
        return [r.pod.name for r in self.classified.of_kind(Retire) if r.reported]


@dataclass(frozen=True, kw_only=True)
class Applied:
    """What one action of the plan did: its outcome, the Pods it created, rebuilt or removed,
    and the runtime's error if it failed (``pod`` names the Pods for an action that names
    none, i.e. the ones a creation made)."""

    action: Action
    outcome: Outcome
    pod: str | None = None
    created: tuple[str, ...] = ()
    rebuilt: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    error: str | None = None
    handed_over: bool = False  # a creation left running: its batch writes its event


@dataclass(frozen=True)
class Executed:
    """What the executor did with a plan, action by action, in the plan's order."""

    applied: tuple[Applied, ...] = ()

    @property
    def created(self) -> list[str]:
        return [name for a in self.applied for name in a.created]

    @property
    def rebuilt(self) -> list[str]:
        return [name for a in self.applied for name in a.rebuilt]

    @property
    def removed(self) -> list[str]:
        return [name for a in self.applied for name in a.removed]

    @property
    def creation_error(self) -> str | None:
        """The runtime's error if creating a Pod (or a rebuild's replacement) failed."""
        making = (CreatePods, RebuildPod)
        return next(
            (a.error for a in self.applied if a.error and isinstance(a.action, making)), None
        )

    @property
    def failures(self) -> list[str]:
        return [f"{a.action.kind} failed: {a.error}" for a in self.applied if a.error is not None]
