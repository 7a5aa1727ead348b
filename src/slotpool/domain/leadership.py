"""Leadership of the controller among replicas on one database, as this process holds it.

One replica at a time leads: it runs the controller and the sweeper. It holds a lease, a row in
the database (``store/cluster.py``) naming it and a term that grows by one at each election. What
it does as leader is *fenced* twice:

* against its own clock: it counts itself leader only until ``deadline``, the monotonic time at
  the start of its last successful renewal plus the lease less a margin. A process paused past
  that (SIGSTOP, a frozen VM) finds it passed the moment it runs again, before it could ask the
  database anything, so it sends no Kubernetes write after waking;
* against the database: each of its units of work checks, inside its transaction, that the lease
  row still names it with its term (``Store``), so a newer leader's election waits for it or
  refuses it.

The leader's work runs in tasks whose context holds its ``Lease`` (``CURRENT``; asyncio copies a
task's context into the tasks it starts); requests never do, so the request path pays nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime


class NotLeader(Exception):
    """A write refused because the process doing it no longer leads (its lease ran out, or a
    newer term exists)."""


def renewal_margin(lease_seconds: float) -> float:
    """How much sooner than the database a leader gives up its lease by its own clock: a fifth
    of the lease (3 s of the default 15), time for a write under way to land before another
    replica may be elected."""
    return lease_seconds / 5


@dataclass
class Lease:
    """This process's leadership of one term. Mutable: renewals move ``deadline``, a loss sets
    ``lost``; the tasks of the term share the one object."""

    replica_id: str
    term: int
    deadline: float  # on ``monotonic``
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)
    lost: str | None = None

    def renewed(self, started: float, lease_seconds: float) -> None:
        """A renewal that started at ``started`` (monotonic) succeeded."""
        if self.lost is None:
            self.deadline = started + lease_seconds - renewal_margin(lease_seconds)

    def lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why

    @property
    def valid(self) -> bool:
        return self.lost is None and self.monotonic() < self.deadline

    def check(self) -> None:
        """``NotLeader`` unless this term still leads by this process's own clock."""
        if self.lost is not None:
            raise NotLeader(f"{self.replica_id} no longer leads (term {self.term}): {self.lost}")
        if self.monotonic() >= self.deadline:
            raise NotLeader(
                f"{self.replica_id} no longer leads (term {self.term}): its lease was not "
                "renewed in time"
            )


# Set in the leader's tasks (the controller, the sweeper): their writes are fenced by it.
CURRENT: ContextVar[Lease | None] = ContextVar("slotpool_leader_lease", default=None)


def fence() -> Lease | None:
    """The lease the current task acts under, checked (``NotLeader``); None outside the leader's
    work (a request), which is not fenced."""
    lease = CURRENT.get()
    if lease is not None:
        lease.check()
    return lease


@dataclass(frozen=True)
class PodSettings:
    """The settings of a replica that enter the Pods it builds (and so their config hash). The
    leader publishes its own; every replica builds with the leader's, so replicas configured
    differently do not rebuild each other's Pods."""

    public_url: str
    default_namespace: str

    def as_dict(self) -> dict[str, str]:
        return {"public_url": self.public_url, "default_namespace": self.default_namespace}

    @classmethod
    def of(cls, values: dict[str, str]) -> PodSettings:
        return cls(public_url=values["public_url"], default_namespace=values["default_namespace"])

    def differences(self, leader: PodSettings) -> list[str]:
        """Each setting whose value here is not the leader's, said in words."""
        mine, theirs = self.as_dict(), leader.as_dict()
        return [
            f"{name}: {mine[name]} (the leader's: {theirs[name]})"
            for name in mine
            if mine[name] != theirs[name]
        ]


@dataclass(frozen=True)
class LeaderRecord:
    """The lease as the database holds it; ``replica_id`` None while nobody holds it."""

    replica_id: str | None
    term: int
    acquired_at: datetime | None
    expires_at: datetime | None
    pod_settings: PodSettings | None
    first_pass_at: datetime | None
    now: datetime  # the database's clock when it was read

    @property
    def leads(self) -> str | None:
        """The replica that leads now: the holder, unless its lease ran out."""
        if self.replica_id is None or self.expires_at is None or self.expires_at <= self.now:
            return None
        return self.replica_id


@dataclass(frozen=True)
class Replica:
    """A server process on the database, as it last said (every renewal)."""

    replica_id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_seen_at: datetime
    stopping: bool
    pod_settings: PodSettings | None
