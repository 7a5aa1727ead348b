"""What every runtime offers the controller, and the registry of the runtimes a server has.

A runtime keeps a pool's token secret and its "pods": it starts agents from the domain's
``AgentSpec`` (``create_agent``), lists and deletes them. Two implement it: Kubernetes (a Pod in a
cluster, ``kubernetes.py``, built from the spec by the one Pod builder) and local (an agent process
on this host, ``local.py``). The controller holds pools to it without knowing which one runs
underneath. What only some runtimes can do is declared in ``capabilities`` and checked once, when
the runtime is registered: ``watch`` (it tells when its pods change, ``PodWatcher``) and
``dry_run`` (it tells how it would admit an agent without starting it, ``DryRunner``).

To add a runtime (say Nomad or plain Docker), one touches:

1. a new module in ``runtime/`` with a class that implements ``PodRuntime`` (and the
   sub-protocols of the capabilities it declares), starting agents from ``AgentSpec``;
2. a ``PoolType`` value for its pools (``domain/config.py``);
3. a line in ``build_runtimes`` (``api/app.py``) that registers it (or says why it is off);
4. its tests (``tests/runtime/``).

Beyond the runtime's reach for now: the database still checks ``pool_type`` against a fixed list
(``store/models.py``, so a migration), the UI lists the pool types it offers
(``ui/src/pages/PoolsList.tsx``), and a runtime that needs configuring adds its settings
(``settings.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.config import PoolType

SecretOutcome: TypeAlias = Literal["created", "updated", "unchanged"]
# Kubernetes' Pod phases; a local process is Running while it lives, then Succeeded or Failed.
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
ENDED_PHASES = frozenset({SUCCEEDED, FAILED})


@dataclass(frozen=True)
class RuntimePod:
    """A pod as the runtime reports it; ``reason``/``message`` say why it is not running."""

    name: str
    namespace: str
    pool_id: str
    config_hash: str | None
    phase: str
    node: str | None
    reason: str | None
    message: str | None
    created_at: datetime
    deleting: bool
    ip: str | None
    # What its agent proves itself with at registration (``domain.agent_identity``): the Pod's
    # UID (Kubernetes), a launch secret (local); None if the runtime has none.
    uid: str | None = None

    @property
    def ended(self) -> bool:
        return self.phase in ENDED_PHASES

    def why(self) -> str:
        """The runtime's reason in one line, e.g. "Unschedulable: 0/3 nodes are available..."."""
        if self.reason and self.message:
            return f"{self.reason}: {self.message}"
        return self.reason or self.message or ""


class Capability(StrEnum):
    """What a runtime can do beyond ``PodRuntime``; each names the protocol it implements."""

    watch = "watch"  # PodWatcher
    dry_run = "dry_run"  # DryRunner
    manifests = "manifests"  # ManifestReader


class PodRuntime(Protocol):
    """The operations the controller needs; ``namespace`` is ignored by the local runtime."""

    name: str  # "kubernetes" or "local", for messages
    capabilities: frozenset[Capability]

    async def prepare(self, namespace: str) -> None:
        """Make the place for the pool's pods (a namespace enforcing ``restricted``)."""

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        """The agent token in the pool's Secret, None if there is none."""

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        """Make the pool's Secret hold ``token``."""

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        """Delete the pool's Secret; already gone is success."""

    async def pods(self, namespace: str, pool_id: str, *, fresh: bool = False) -> list[RuntimePod]:
        """Every pod of the pool that exists, ended ones included. A runtime may answer from what
        it follows (Kubernetes: a watch's cache); ``fresh`` asks the runtime itself."""

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        """Every pod slotpool manages in the namespace, of any pool (to find orphans)."""

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        """Start one agent as ``spec`` describes it, in ``spec.namespace``."""

    async def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (its agent gets SIGTERM and drains); already gone is success."""

    async def close(self) -> None:
        """The server stops: release what the runtime holds (connections). Pods in a cluster
        are left running; local agents, the server's own processes, are stopped."""


@runtime_checkable
class PodWatcher(Protocol):
    """A runtime that can tell when its Pods change (Kubernetes: a watch), so the controller
    need not wait for its next resync to notice a Pod that started, ended or was deleted."""

    def watch_pools(self, namespace: str) -> AsyncIterator[str]:
        """The pool id of every slotpool Pod of ``namespace`` that changes, as it changes."""
        ...


@runtime_checkable
class DryRunner(Protocol):
    """A runtime that can say how it would admit an agent (Kubernetes: a server-side dry run
    with validation, defaults and admission), nothing started."""

    async def dry_run(self, spec: AgentSpec) -> dict[str, Any]:
        """The agent as the runtime would admit it; a refusal raises ``PermanentRuntimeError``."""
        ...


@runtime_checkable
class ManifestReader(Protocol):
    """A runtime whose agents have a manifest (Kubernetes: the Pod object), readable as the
    runtime holds it now."""

    async def read_manifest(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The agent's manifest as the runtime holds it, without its status and bookkeeping
        (managed fields); None when there is no such agent."""
        ...


_PROTOCOLS: Mapping[Capability, type] = {
    Capability.watch: PodWatcher,
    Capability.dry_run: DryRunner,
    Capability.manifests: ManifestReader,
}


class NoRuntime(Exception):
    """This server runs no agents of the pool's type; the message says why and what to do."""


class RuntimeRegistry:
    """The runtime of each pool type this server runs agents of, and why the others have none."""

    def __init__(self, runtimes: Mapping[PoolType, PodRuntime] | None = None) -> None:
        self._runtimes: dict[PoolType, PodRuntime] = {}
        self._why_off: dict[PoolType, str] = {}
        for pool_type, runtime in (runtimes or {}).items():
            self.add(pool_type, runtime)

    def add(self, pool_type: PoolType, runtime: PodRuntime) -> None:
        """Register ``runtime`` for ``pool_type``, refusing one that lacks a protocol of the
        capabilities it declares (checked here once, not on every use)."""
        for capability in runtime.capabilities:
            if not isinstance(runtime, _PROTOCOLS[capability]):
                name = _PROTOCOLS[capability].__name__
                raise TypeError(f"{runtime.name} declares {capability} but is no {name}")
        self._runtimes[pool_type] = runtime

    def off(self, pool_type: PoolType, why: str) -> None:
        """Say why this server runs no ``pool_type`` agents (and how to change that)."""
        self._why_off[pool_type] = why

    def get(self, pool_type: PoolType, pool_id: str) -> PodRuntime:
        """The runtime of ``pool_id`` (of ``pool_type``); ``NoRuntime`` says why there is none."""
        runtime = self._runtimes.get(pool_type)
        if runtime is not None:
            return runtime
        if pool_type is PoolType.static:
            raise NoRuntime(f"{pool_id} is a static pool: its agents are started by hand, no Pods")
        why = self._why_off.get(pool_type, f"this server runs no agents of {pool_type} pools")
        raise NoRuntime(why)

    def find(self, pool_type: PoolType) -> PodRuntime | None:
        return self._runtimes.get(pool_type)

    def capabilities(self, pool_type: PoolType) -> frozenset[Capability]:
        runtime = self._runtimes.get(pool_type)
        return frozenset() if runtime is None else runtime.capabilities

    def watcher(self, pool_type: PoolType) -> PodWatcher | None:
        """The runtime of ``pool_type`` if it can watch its pods."""
        runtime = self._runtimes.get(pool_type)
        if Capability.watch not in self.capabilities(pool_type):
            return None
        assert isinstance(runtime, PodWatcher)  # checked when it was added
        return runtime

    def dry_runner(self, pool_type: PoolType) -> DryRunner | None:
        """The runtime of ``pool_type`` if it can do a dry run."""
        runtime = self._runtimes.get(pool_type)
        if Capability.dry_run not in self.capabilities(pool_type):
            return None
        assert isinstance(runtime, DryRunner)  # checked when it was added
        return runtime

    def manifest_reader(self, pool_type: PoolType) -> ManifestReader | None:
        """The runtime of ``pool_type`` if its agents have manifests it can read."""
        runtime = self._runtimes.get(pool_type)
        if Capability.manifests not in self.capabilities(pool_type):
            return None
        assert isinstance(runtime, ManifestReader)  # checked when it was added
        return runtime

    def items(self) -> Iterator[tuple[PoolType, PodRuntime]]:
        return iter(list(self._runtimes.items()))

    def reasons(self) -> Iterator[tuple[PoolType, str]]:
        """Why each pool type without a runtime has none."""
        return iter(list(self._why_off.items()))

    def __contains__(self, pool_type: object) -> bool:
        return pool_type in self._runtimes

    def __len__(self) -> int:
        return len(self._runtimes)

    async def close_all(self) -> None:
        """Close every runtime, each even if one before it failed; the first failure is raised."""
        failures: list[Exception] = []
        for runtime in self._runtimes.values():
            try:
                await runtime.close()
            except Exception as exc:  # the others are still closed
                failures.append(exc)
        if failures:
            raise failures[0]
