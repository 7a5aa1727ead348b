"""Part 1: how fast the controller reacts to a queued task with a Pod create request (the
fake runtime stamps each ``create_agent``; see the package's docstring)."""

from __future__ import annotations

import asyncio
import copy
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from tests.support.fake_runtime import FakeRuntime
from tests.support.server import live_server

from bench.controller.common import (
    POOLS,
    REACTION_CONFIG,
    SERVER_PASS_TIMEOUT,
    TASKS,
    api_client,
    server_settings,
)
from bench.harness.cpu import machine_busy_seconds
from slotpool.api.app import build_services
from slotpool.clock import utc_now
from slotpool.domain.config import PoolType, parse_config
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store


@dataclass
class Reaction:
    resync: float
    after_return_ms: list[float] = field(default_factory=list)
    after_send_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    new_pool_ms: float | None = None
    seconds: float = 0.0
    others_cpu: float = 0.0


async def seed_pool(settings: Settings, name: str, raw: dict[str, Any]) -> str:
    store = Store(settings.database_url)
    try:
        services = build_services(store, settings, utc_now)
        config = parse_config(copy.deepcopy(raw), pool_type=PoolType.k8s)
        pool = await services.pools.create(
            name=name, description="", pool_type=PoolType.k8s, config=config, by="bench"
        )
        return pool.pool_id
    finally:
        await store.close()


def run_reaction(resync: float, samples: int, warmups: int) -> Reaction:
    result = Reaction(resync)
    work = Path(tempfile.mkdtemp(prefix="slotpool-bench-reaction-"))
    fake = FakeRuntime()
    settings = server_settings(work, pod_sync_seconds=resync)
    started, busy_before, cpu_before = time.monotonic(), machine_busy_seconds(), time.process_time()
    try:
        upgrade(settings.database_url)
        pool_id = asyncio.run(seed_pool(settings, "reaction", REACTION_CONFIG))
        with (
            live_server(settings, runtimes={PoolType.k8s: fake}) as served,
            api_client(served.url) as api,
        ):
            if not fake.wait(lambda: fake.lists[pool_id] > 0, SERVER_PASS_TIMEOUT):
                raise RuntimeError("the controller made no pass over the seeded pool")
            for index in range(warmups + samples):
                sample(result, api, fake, pool_id, measured=index >= warmups)
            result.new_pool_ms = new_pool_reaction(api, fake, resync)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - started
    result.others_cpu = max(
        0.0, machine_busy_seconds() - busy_before - (time.process_time() - cpu_before)
    )
    return result


def sample(result: Reaction, api: httpx.Client, fake: FakeRuntime, pool_id: str, *,
           measured: bool) -> None:  # fmt: skip
    """One task: from its POST to the ``create_agent`` it caused."""
    before = len(fake.created[pool_id])
    sent = time.perf_counter()
    response = api.post(TASKS, json={"pool_id": pool_id, "command": "true"})
    returned = time.perf_counter()
    if response.status_code != 201:
        raise RuntimeError(f"submit: HTTP {response.status_code}: {response.text}")
    done = fake.wait(partial(created_more, fake, pool_id, before), result.resync + 10)
    if not measured:
        return
    if not done:
        result.timeouts += 1
        return
    at = fake.created[pool_id][before]
    result.after_return_ms.append((at - returned) * 1000)
    result.after_send_ms.append((at - sent) * 1000)
    result.post_ms.append((returned - sent) * 1000)


def created_more(fake: FakeRuntime, pool_id: str, before: int) -> bool:
    return len(fake.created[pool_id]) > before


def new_pool_reaction(api: httpx.Client, fake: FakeRuntime, resync: float) -> float | None:
    """A pool created while the server runs, one task at once: ms to its first ``create_agent``."""
    body = {"name": "reaction-new", "pool_type": "k8s", "k8s_config": REACTION_CONFIG}
    response = api.post(POOLS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"create pool: HTTP {response.status_code}: {response.text}")
    pool_id: str = response.json()["pool_id"]
    sent = time.perf_counter()
    api.post(TASKS, json={"pool_id": pool_id, "command": "true"}).raise_for_status()
    if not fake.wait(lambda: bool(fake.created[pool_id]), resync + 10):
        return None
    return (fake.created[pool_id][0] - sent) * 1000
