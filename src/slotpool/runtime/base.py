"""What every runtime offers the services: the pool's token "Secret" and its "pods".

Two runtimes implement it: Kubernetes (a Pod in a cluster, ``kubernetes.py``) and local (an agent
process on this host, ``local.py``). The services hold pools to it without knowing which one runs
underneath, so one keeper (and later one controller) serves both pool types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

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

    @property
    def ended(self) -> bool:
        return self.phase in ENDED_PHASES

    def why(self) -> str:
        """The runtime's reason in one line, e.g. "Unschedulable: 0/3 nodes are available..."."""
        if self.reason and self.message:
            return f"{self.reason}: {self.message}"
        return self.reason or self.message or ""


class PodRuntime(Protocol):
    """The operations the pod keeper needs; ``namespace`` is ignored by the local runtime."""

    name: str  # "kubernetes" or "local", for messages

    async def prepare(self, namespace: str) -> None:
        """Make the place for the pool's pods (a namespace enforcing ``restricted``)."""

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        """The agent token in the pool's Secret, None if there is none."""

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        """Make the pool's Secret hold ``token``."""

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        """Delete the pool's Secret; already gone is success."""

    async def pods(self, namespace: str, pool_id: str) -> list[RuntimePod]:
        """Every pod of the pool that exists, ended ones included."""

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        """Every pod slotpool manages in the namespace, of any pool (to find orphans)."""

    async def create_pod(self, manifest: Mapping[str, Any]) -> RuntimePod:
        """Create a pod from the builder's manifest."""

    async def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (its agent gets SIGTERM and drains); already gone is success."""

    async def dry_run(self, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """The pod as the runtime would admit it, nothing created; None if it cannot tell."""


@runtime_checkable
class PodWatcher(Protocol):
    """A runtime that can tell when its Pods change (Kubernetes: a watch), so the controller
    need not wait for its next resync to notice a Pod that started, ended or was deleted."""

    def watch_pools(self, namespace: str) -> AsyncIterator[str]:
        """The pool id of every slotpool Pod of ``namespace`` that changes, as it changes."""
        ...
