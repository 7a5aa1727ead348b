"""An in-memory ``PodRuntime``: the controller's fast tests and the controller benchmark run it
where a cluster would only be slow, and it does what a test tells it to.

Pods are kept per namespace and pool. What a new Pod does is ``start``: become ``Running`` at
once, or stay ``Pending`` as one no Node can take (``never``); the next creates can be made to
fail (``fail_creates``); a Pod can be made to appear outside slotpool's books (``add``), change
phase (``set_phase``: end ``Failed``, say) or disappear (``vanish``). Every ``create_agent`` is
stamped with ``time.perf_counter()`` (one clock for every thread), and a thread can wait for the
runtime to change (``wait``): the benchmark's client runs in another thread than the server.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
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


class FakeRuntime:
    """A ``PodRuntime`` whose Pods live in memory (see the module's docstring)."""

    name = "fake"
    capabilities: frozenset[Capability] = frozenset({Capability.dry_run})

    def __init__(self, *, clock: Clock = utc_now, start: Start = "running") -> None:
        self.clock = clock
        self.start = start
        self.pods_of: defaultdict[str, dict[str, RuntimePod]] = defaultdict(dict)
        self.tokens: dict[str, str] = {}
        self.created: defaultdict[str, list[float]] = defaultdict(list)  # perf_counter stamps
        self.deleted: list[str] = []
        self.prepared: set[str] = set()
        self.lists: Counter[str] = Counter()
        self.token_reads = 0
        self._create_errors: list[RuntimeApiError] = []
        self._serial = itertools.count(1)
        self._changed = threading.Condition()

    # -- what a test does ------------------------------------------------------------------------

    def add(
        self,
        pool_id: str,
        name: str,
        *,
        namespace: str,
        config_hash: str | None,
        phase: str = RUNNING,
        created_at: datetime | None = None,
    ) -> RuntimePod:
        """A Pod with the pool's labels that slotpool did not create (or does not know yet)."""
        pod = RuntimePod(
            name=name,
            namespace=namespace,
            pool_id=pool_id,
            config_hash=config_hash,
            phase=phase,
            node="fake-node" if phase == RUNNING else None,
            reason=None,
            message=None,
            created_at=created_at or self.clock(),
            deleting=False,
            ip="10.0.0.1" if phase == RUNNING else None,
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

    def fail_creates(self, count: int, *, status: int = 503, message: str = "unavailable") -> None:
        """The next ``count`` creates fail as an API server in trouble answers."""
        self._create_errors += [TemporaryRuntimeError(status=status, message=message)] * count

    def names(self, pool_id: str) -> set[str]:
        return set(self.pods_of[pool_id])

    def wait(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait (from another thread) until ``check()`` holds; False after ``timeout``."""
        with self._changed:
            return self._changed.wait_for(check, timeout)

    # -- the PodRuntime protocol -----------------------------------------------------------------

    async def prepare(self, namespace: str) -> None:
        self.prepared.add(namespace)

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        self.token_reads += 1
        return self.tokens.get(pool_id)

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        outcome: SecretOutcome = "updated" if pool_id in self.tokens else "created"
        self.tokens[pool_id] = token
        return outcome

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        self.tokens.pop(pool_id, None)

    async def pods(self, namespace: str, pool_id: str) -> list[RuntimePod]:
        self.lists[pool_id] += 1
        self._notify()
        return [p for p in self.pods_of[pool_id].values() if p.namespace == namespace]

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        return [
            pod for pods in self.pods_of.values() for pod in pods.values()
            if pod.namespace == namespace
        ]  # fmt: skip

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        called = time.perf_counter()
        if self._create_errors:
            raise self._create_errors.pop(0)
        pool_id = spec.pool_id
        pod = self.add(
            pool_id,
            f"{spec.name_prefix}{next(self._serial):05d}",
            namespace=spec.namespace,
            config_hash=spec.config_hash,
            phase=RUNNING if self.start == "running" else PENDING,
        )
        if self.start == "never":
            pod = replace(pod, reason=UNSCHEDULABLE[0], message=UNSCHEDULABLE[1])
            self.pods_of[pool_id][pod.name] = pod
        with self._changed:
            self.created[pool_id].append(called)
            self._changed.notify_all()
        return pod

    async def delete_pod(self, namespace: str, name: str) -> None:
        for pods in self.pods_of.values():
            if pods.pop(name, None) is not None:
                self.deleted.append(name)

    async def dry_run(self, spec: AgentSpec) -> dict[str, Any]:
        return pod_manifest(spec)

    async def close(self) -> None:
        return None

    # -- inside ----------------------------------------------------------------------------------

    def _find(self, name: str) -> tuple[str, RuntimePod]:
        for pool_id, pods in self.pods_of.items():
            if name in pods:
                return pool_id, pods[name]
        raise KeyError(f"no Pod {name} in the fake runtime")

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
