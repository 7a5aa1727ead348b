"""An in-memory ``PodRuntime`` for the controller's fast tests: Pods are records in a dict, every
call is counted, and a test can make the next calls of an operation fail.

(The real runtimes are tested against a real API server and real processes in ``tests/runtime``
and ``tests/e2e``; this one only stands in for them where the controller's own logic is tested.)
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from slotpool.clock import Clock, utc_now
from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.manifest import pod_manifest
from slotpool.runtime.base import Capability, RuntimePod, SecretOutcome
from slotpool.runtime.errors import RuntimeApiError, TemporaryRuntimeError


class FakeRuntime:
    name = "fake"
    capabilities: frozenset[Capability] = frozenset({Capability.dry_run})

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self.pods_by_name: dict[str, RuntimePod] = {}
        self.tokens: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self.failing: dict[str, RuntimeApiError] = {}
        self._serial = itertools.count(1)

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        error = self.failing.get(operation)
        if error is not None:
            raise error

    def fail(self, operation: str, message: str = "the API server is down") -> None:
        self.failing[operation] = TemporaryRuntimeError(status=503, message=message)

    def add(self, name: str, pool_id: str, **values: Any) -> RuntimePod:
        """A Pod made behind slotpool's back (or changed: ``values`` replace its fields)."""
        pod = RuntimePod(
            name=name,
            namespace="agents",
            pool_id=pool_id,
            config_hash=None,
            phase="Running",
            node="fake-node",
            reason=None,
            message=None,
            created_at=self._clock(),
            deleting=False,
            ip=None,
        )
        self.pods_by_name[name] = replace(self.pods_by_name.get(name, pod), **values)
        return self.pods_by_name[name]

    def of(self, pool_id: str) -> list[str]:
        return [p.name for p in self.pods_by_name.values() if p.pool_id == pool_id]

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

    async def pods(self, namespace: str, pool_id: str) -> list[RuntimePod]:
        self._call("pods")
        return [p for p in self.pods_by_name.values() if p.pool_id == pool_id]

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        self._call("all_pods")
        return list(self.pods_by_name.values())

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        self._call("create_agent")
        name = f"{spec.name_prefix}{next(self._serial):03d}"
        return self.add(name, spec.pool_id, config_hash=spec.config_hash, node=None)

    async def delete_pod(self, namespace: str, name: str) -> None:
        self._call("delete_pod")
        self.pods_by_name.pop(name, None)

    async def dry_run(self, spec: AgentSpec) -> dict[str, Any]:
        self._call("dry_run")
        return pod_manifest(spec)

    async def close(self) -> None:
        self._call("close")


class WatchingFakeRuntime(FakeRuntime):
    """The same, with a watch (as Kubernetes has): ``changes`` are what the next watch reports
    (pool ids), then it ends, or fails with ``watch_error``."""

    capabilities: frozenset[Capability] = frozenset({Capability.dry_run, Capability.watch})

    def __init__(self, clock: Clock = utc_now) -> None:
        super().__init__(clock)
        self.changes: list[str] = []
        self.watch_error: Exception | None = None

    async def watch_pools(self, namespace: str) -> AsyncIterator[str]:
        self.calls["watch_pools"] += 1
        for pool_id in self.changes:
            yield pool_id
        if self.watch_error is not None:
            raise self.watch_error
