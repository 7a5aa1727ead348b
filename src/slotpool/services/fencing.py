"""The runtimes as the leader's work uses them: each write (a Pod created or deleted, a Secret
written or deleted, a namespace prepared) is checked against the leader's lease right before it
is sent, and refused (``NotLeader``) once the lease ran out by this process's clock or was lost.

The check is the lease of the calling task (``domain.leadership.CURRENT``): the controller's and
the sweeper's tasks carry it; a request does not, so the passes an API call triggers (a sync, a
configuration saved, a token rotation, a pool deleted) run unfenced on whichever replica got the
call, as before; what keeps them from racing the leader's passes is the per-pool lock.
"""

from __future__ import annotations

from typing import Any

from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.leadership import fence
from slotpool.runtime.base import (
    Capability,
    PodRuntime,
    RuntimePod,
    RuntimeRegistry,
    SecretOutcome,
)


class FencedRuntime:
    """``runtime`` with its writes fenced; reads, and what its capabilities add (a watch, a dry
    run, a manifest read), pass through."""

    def __init__(self, runtime: PodRuntime) -> None:
        self.inner = runtime
        self.name = runtime.name
        self.capabilities: frozenset[Capability] = runtime.capabilities

    def __getattr__(self, name: str) -> Any:  # watch_pools, dry_run, read_manifest, ...
        return getattr(self.inner, name)

    async def prepare(self, namespace: str) -> None:
        fence()
        await self.inner.prepare(namespace)

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        return await self.inner.read_token(namespace, pool_id)

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        fence()
        return await self.inner.write_token(namespace, pool_id, token)

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        fence()
        await self.inner.delete_token(namespace, pool_id)

    async def pods(self, namespace: str, pool_id: str, *, fresh: bool = False) -> list[RuntimePod]:
        return await self.inner.pods(namespace, pool_id, fresh=fresh)

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        return await self.inner.all_pods(namespace)

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        fence()
        return await self.inner.create_agent(spec)

    async def delete_pod(self, namespace: str, name: str) -> None:
        fence()
        await self.inner.delete_pod(namespace, name)

    async def close(self) -> None:
        await self.inner.close()


def fenced(registry: RuntimeRegistry) -> RuntimeRegistry:
    """A registry of the same runtimes, each fenced (``FencedRuntime``); the reasons given for
    the pool types without one are kept. Closing stays with the owner of ``registry``."""
    out = RuntimeRegistry()
    for pool_type, runtime in registry.items():
        out.add(pool_type, FencedRuntime(runtime))
    for pool_type, why in registry.reasons():
        out.off(pool_type, why)
    return out
