"""The in-memory runtime the controller's tests stand on does what they tell it: a failure for
good or for the next few calls, Pods added, changed and vanished, and the capabilities the
runtime registry checks (only the watching one is a watcher)."""

from __future__ import annotations

import pytest

from slotpool.domain.config import PoolType
from slotpool.runtime.base import FAILED, PENDING, Capability, RuntimeRegistry
from slotpool.runtime.errors import TemporaryRuntimeError
from tests.support.fake_runtime import FakeRuntime, WatchingFakeRuntime

POOL = "pool-0123456789abcdef"


async def test_a_failure_for_the_next_calls_ends_after_them_one_for_good_does_not() -> None:
    runtime = FakeRuntime()
    runtime.fail("read_token", times=2)
    runtime.fail("write_token", "quota exceeded")
    for _ in range(2):
        with pytest.raises(TemporaryRuntimeError, match="503: the API server is down"):
            await runtime.read_token("agents", POOL)
    assert await runtime.read_token("agents", POOL) is None
    for _ in range(3):
        with pytest.raises(TemporaryRuntimeError, match="quota exceeded"):
            await runtime.write_token("agents", POOL, "spt_x")
    assert runtime.calls == {"read_token": 3, "write_token": 3}
    assert runtime.tokens == {}


async def test_pods_added_changed_and_vanished_are_listed_per_pool_and_namespace() -> None:
    runtime = FakeRuntime()
    runtime.add(POOL, "a")
    runtime.add(POOL, "b", namespace="elsewhere", phase=PENDING)
    runtime.add("pool-other0000000000", "c")
    runtime.set_phase("a", FAILED, reason="Error", message="exit code 1")

    (a,) = await runtime.pods("agents", POOL)
    assert (a.name, a.phase, a.why()) == ("a", FAILED, "Error: exit code 1")
    assert [p.name for p in await runtime.all_pods("agents")] == ["a", "c"]
    assert runtime.of(POOL) == ["a", "b"]
    runtime.vanish("a")
    assert sorted(runtime.pods_by_name) == ["b", "c"]
    assert runtime.lists == {POOL: 1}


def test_only_the_watching_runtime_declares_and_offers_a_watch() -> None:
    plain, watching = FakeRuntime(), WatchingFakeRuntime()
    registry = RuntimeRegistry({PoolType.k8s: plain, PoolType.local: watching})
    assert registry.watcher(PoolType.k8s) is None
    assert registry.watcher(PoolType.local) is watching
    assert registry.dry_runner(PoolType.k8s) is plain
    assert Capability.watch not in plain.capabilities
