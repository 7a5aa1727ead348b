"""An in-memory ``PodRuntime``: the controller's fast tests and the controller benchmark run it
where a cluster would only be slow, and it does what a test tells it to.

Pods are kept per pool (in their namespace). What a new Pod does is ``start``: become ``Running``
at once, or stay ``Pending`` as one no Node can take (``never``). A test can make the next calls
of an operation fail (``fail``: all of them, or ``times`` of them), make a Pod appear outside
slotpool's books (``add``), change phase (``set_phase``: end ``Failed``, say) or disappear
(``vanish``). Every call is counted per operation (``calls``), every listing per pool (``lists``).
``WatchingFakeRuntime`` adds the watch Kubernetes has (``Capability.watch``).

For the benchmark, whose client runs in another thread than the server: every ``create_agent``
is stamped with ``time.perf_counter()`` (one clock for every thread), and a thread can wait for
the runtime to change (``wait``).

(The real runtimes are tested against a real API server and real processes in ``tests/runtime``
and ``tests/e2e``; this one only stands in for them where the controller's own logic is tested.)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from slotpool.clock import Clock, utc_now
from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.manifest import pod_manifest
from slotpool.runtime.base import PENDING, RUNNING, Capability, RuntimePod, SecretOutcome
from slotpool.runtime.errors import RuntimeApiError, TemporaryRuntimeError

Start = Literal["running", "never"]
UNSCHEDULABLE = ("Unschedulable", "0/3 nodes are available: 3 Insufficient cpu.")
NAMESPACE = "agents"  # where ``add`` puts a Pod unless told (the controller tests' namespace)
DOWN = "the API server is down"


class FakeRuntime:
    """A ``PodRuntime`` whose Pods live in memory (see the module's docstring)."""

    name = "fake"
    capabilities: frozenset[Capability] = frozenset({Capability.dry_run})

    def __init__(self, *, clock: Clock = utc_now, start: Start = "running") -> None:
        self.clock = clock
        self.start = start
        self.pods_of: defaultdict[str, dict[str, RuntimePod]] = defaultdict(dict)
        self.tokens: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self.lists: Counter[str] = Counter()  # pods() per pool
        self.created: defaultdict[str, list[float]] = defaultdict(list)  # perf_counter stamps
        self.deleted: list[str] = []
        # Pods a cache of the runtime would not hold yet (a watch not caught up): left out of
        # ``pods`` unless it is asked ``fresh``; ``fresh_lists`` counts those asks.
        self.unreported: set[str] = set()
        self.fresh_lists = 0
        # An operation's error, raised by its calls for good, or its next ``times`` ones.
        self.failing: dict[str, RuntimeApiError] = {}
        self._failures_left: dict[str, int] = {}
        self._serial = itertools.count(1)
        self._changed = threading.Condition()

    # -- what a test does ------------------------------------------------------------------------

    def add(
        self,
        pool_id: str,
        name: str,
        *,
        namespace: str = NAMESPACE,
        config_hash: str | None = None,
        phase: str = RUNNING,
        reason: str | None = None,
        message: str | None = None,
        created_at: datetime | None = None,
        deleting: bool = False,
    ) -> RuntimePod:
        """A Pod with the pool's labels that slotpool did not create (or does not know yet)."""
        pod = RuntimePod(
            name=name,
            namespace=namespace,
            pool_id=pool_id,
            config_hash=config_hash,
            phase=phase,
            node="fake-node" if phase == RUNNING else None,
            reason=reason,
            message=message,
            created_at=created_at or self.clock(),
            deleting=deleting,
            ip="10.0.0.1" if phase == RUNNING else None,
            uid=f"uid-of-{name}",
        )
        self.pods_of[pool_id][name] = pod
        return pod

    def set_phase(
        self, name: str, phase: str, *, reason: str | None = None, message: str | None = None
    ) -> None:
        pool_id, pod = self._find(name)
        self.pods_of[pool_id][name] = replace(pod, phase=phase, reason=reason, message=message)

    def vanish(self, name: str) -> None:
        """Deleted behind slotpool's back."""
        pool_id, _ = self._find(name)
        del self.pods_of[pool_id][name]

    def fail(
        self, operation: str, message: str = DOWN, *, status: int = 503, times: int | None = None
    ) -> None:
        """``operation``'s calls fail as an API server in trouble answers: all of them, or the
        next ``times``. (``failing[operation] = error`` fails them with another error.)"""
        self.failing[operation] = TemporaryRuntimeError(status=status, message=message)
        if times is not None:
            self._failures_left[operation] = times

    def of(self, pool_id: str) -> list[str]:
        """The names of the pool's Pods, in the order they came."""
        return list(self.pods_of[pool_id])

    def names(self, pool_id: str) -> set[str]:
        return set(self.pods_of[pool_id])

    @property
    def pods_by_name(self) -> dict[str, RuntimePod]:
        """Every Pod of every pool, by name (a copy)."""
        return {name: pod for pods in self.pods_of.values() for name, pod in pods.items()}

    def wait(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait (from another thread) until ``check()`` holds; False after ``timeout``."""
        with self._changed:
            return self._changed.wait_for(check, timeout)

    # -- the PodRuntime protocol -----------------------------------------------------------------

    async def prepare(self, namespace: str) -> None:
        self._call("prepare")

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        self._call("read_token")
        return self.tokens.get(pool_id)

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        self._call("write_token")
        outcome: SecretOutcome = "updated" if pool_id in self.tokens else "created"
        self.tokens[pool_id] = token
        return outcome

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        self._call("delete_token")
        self.tokens.pop(pool_id, None)

    async def pods(self, namespace: str, pool_id: str, *, fresh: bool = False) -> list[RuntimePod]:
        self._call("pods")
        self.lists[pool_id] += 1
        self.fresh_lists += fresh
        self._notify()
        return [
            p
            for p in self.pods_of[pool_id].values()
            if p.namespace == namespace and (fresh or p.name not in self.unreported)
        ]

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        self._call("all_pods")
        return [
            pod for pods in self.pods_of.values() for pod in pods.values()
            if pod.namespace == namespace
        ]  # fmt: skip

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        called = time.perf_counter()
        self._call("create_agent")
        pod = self.add(
            spec.pool_id,
            f"{spec.name_prefix}{next(self._serial):05d}",
            namespace=spec.namespace,
            config_hash=spec.config_hash,
            phase=RUNNING if self.start == "running" else PENDING,
        )
        if self.start == "never":
            pod = replace(pod, reason=UNSCHEDULABLE[0], message=UNSCHEDULABLE[1])
            self.pods_of[spec.pool_id][pod.name] = pod
        with self._changed:
            self.created[spec.pool_id].append(called)
            self._changed.notify_all()
        return pod

    async def delete_pod(self, namespace: str, name: str) -> None:
        self._call("delete_pod")
        for pods in self.pods_of.values():
            if pods.pop(name, None) is not None:
                self.deleted.append(name)

    async def dry_run(self, spec: AgentSpec) -> dict[str, Any]:
        self._call("dry_run")
        return pod_manifest(spec)

    async def close(self) -> None:
        self._call("close")

    # -- inside ----------------------------------------------------------------------------------

    def _call(self, operation: str) -> None:
        """Count the call; raise the operation's error while it is failing."""
        self.calls[operation] += 1
        error = self.failing.get(operation)
        if error is None:
            return
        left = self._failures_left.get(operation)
        if left == 1:  # the last of the ``times``: the calls after it succeed
            del self.failing[operation], self._failures_left[operation]
        elif left is not None:
            self._failures_left[operation] = left - 1
        raise error

    def _find(self, name: str) -> tuple[str, RuntimePod]:
        for pool_id, pods in self.pods_of.items():
            if name in pods:
                return pool_id, pods[name]
        raise KeyError(f"no Pod {name} in the fake runtime")

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()


class WatchingFakeRuntime(FakeRuntime):
    """The same, with a watch (as Kubernetes has): ``changes`` are what the next watch reports
    (pool ids), then it ends, or fails with ``watch_error``."""

    capabilities: frozenset[Capability] = frozenset({Capability.dry_run, Capability.watch})

    def __init__(self, *, clock: Clock = utc_now, start: Start = "running") -> None:
        super().__init__(clock=clock, start=start)
        self.changes: list[str] = []
        self.watch_error: Exception | None = None

    async def watch_pools(self, namespace: str) -> AsyncIterator[str]:
        self.calls["watch_pools"] += 1
        for pool_id in self.changes:
            yield pool_id
        if self.watch_error is not None:
            raise self.watch_error
