"""``agent_pools.pod_fields``: filled by migration 0014 for the pools there are, written with every
configuration, kept current across edits, and not trusted once an edit left them behind (made by
code that does not know them), on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, inspect

from slotpool.domain.agent_spec import PodContext, pod_config_hash
from slotpool.domain.config import PoolConfig, PoolType, parse_config, pod_fields
from slotpool.domain.pools import Pool, StoredConfig
from slotpool.store.db import sync_url
from slotpool.store.migrate import downgrade, upgrade
from slotpool.store.pools import NewPool
from slotpool.store.uow import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CONTEXT = PodContext("pool-0000000000000000", "http://slotpool.test", "agents")
POOLS = sa.table(
    "agent_pools",
    sa.column("pool_id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("description", sa.Text()),
    sa.column("pool_type", sa.String()),
    sa.column("k8s_config", sa.JSON()),
    sa.column("revision", sa.Integer()),
    sa.column("created_by", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_by", sa.String()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
RICH = {
    "image": "busybox:1",
    "namespace": "team-a",
    "env": {"B": "2", "A": "1"},
    "resources": {"limits": {"cpu": "1"}},
    "tolerations": [{"operator": "Exists"}],
}


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = create_engine(sync_url(database_url))
    yield made
    made.dispose()


def insert(engine: sa.Engine, pool_id: str, pool_type: str, config: Any, revision: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            POOLS.insert().values(
                pool_id=pool_id,
                name=pool_id[-4:],
                description="",
                pool_type=pool_type,
                k8s_config=config,
                revision=revision,
                created_by="t",
                created_at=NOW,
                updated_by="t",
                updated_at=NOW,
            )
        )


def stored(engine: sa.Engine) -> dict[str, tuple[str | None, int | None, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT pool_id, pod_fields, pod_fields_revision, revision FROM agent_pools")
        ).all()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def hash_of(pool: Pool) -> str | None:
    return pool.config_hash(CONTEXT)


def expected_hash(pool_type: PoolType, config: dict[str, Any] | None) -> str | None:
    if pool_type is PoolType.static or (config is None and pool_type is PoolType.k8s):
        return None
    return pod_config_hash(PoolConfig.model_validate(config or {}), CONTEXT)


async def test_migration_0014_fills_the_pod_fields_and_goes_back(
    database_url: str, engine: sa.Engine
) -> None:
    upgrade(database_url, "0013")
    pools = {
        "pool-00000000000000k1": (PoolType.k8s, RICH, 3),
        "pool-00000000000000k2": (PoolType.k8s, None, 1),
        "pool-00000000000000l1": (PoolType.local, None, 2),
        "pool-00000000000000l2": (PoolType.local, {"slots_per_pod": 2}, 1),
        "pool-00000000000000s1": (PoolType.static, {"image": "x"}, 1),
    }
    for pool_id, (pool_type, config, revision) in pools.items():
        insert(engine, pool_id, pool_type.value, config, revision)
    upgrade(database_url)
    for pool_id, (fields, at, revision) in stored(engine).items():
        pool_type, config, _ = pools[pool_id]
        assert at == revision
        if expected_hash(pool_type, config) is None:
            assert fields is None
        else:
            effective = PoolConfig.model_validate(config or {})
            assert fields == pod_fields(effective)
    store = Store(database_url)
    try:
        async with store.unit_of_work() as uow:
            for pool_id, (pool_type, config, _) in pools.items():
                pool = await uow.pools.get(pool_id)
                assert pool is not None
                assert hash_of(pool) == expected_hash(pool_type, config), pool_id
    finally:
        await store.close()
    downgrade(database_url, "0013")
    columns = {c["name"] for c in inspect(engine).get_columns("agent_pools")}
    assert not {"pod_fields", "pod_fields_revision"} & columns
    upgrade(database_url)
    assert {at for _, at, _ in stored(engine).values()} == {1, 2, 3}


async def test_the_pod_fields_stay_current_across_edits(
    database_url: str, engine: sa.Engine
) -> None:
    upgrade(database_url)
    pool_id = CONTEXT.pool_id
    first = parse_config(RICH, pool_type=PoolType.k8s)
    second = parse_config({**RICH, "image": "busybox:2"}, pool_type=PoolType.k8s)
    store = Store(database_url)
    try:
        async with store.unit_of_work() as uow:
            await uow.pools.add(NewPool(pool_id, "p", "", PoolType.k8s, first, "t", NOW))
        assert stored(engine)[pool_id] == (pod_fields(first), 1, 1)
        async with store.unit_of_work() as uow:
            saved = await uow.pools.update(
                pool_id, by="t", now=NOW, config=StoredConfig.of(PoolType.k8s, second)
            )
            assert saved is not None
            assert hash_of(saved) == pod_config_hash(second, CONTEXT)
        async with store.unit_of_work() as uow:
            await uow.pools.update(pool_id, by="t", now=NOW, name="renamed")
        assert stored(engine)[pool_id] == (pod_fields(second), 3, 3)
        async with store.unit_of_work() as uow:
            pool = await uow.pools.get(pool_id)
            assert pool is not None
            assert hash_of(pool) == pod_config_hash(second, CONTEXT)
            with pytest.raises(ValueError, match="config="):
                await uow.pools.update(pool_id, by="t", now=NOW, k8s_config={"image": "x"})
    finally:
        await store.close()


async def test_an_edit_that_left_the_pod_fields_behind_is_not_trusted(
    database_url: str, engine: sa.Engine
) -> None:
    upgrade(database_url)
    pool_id = CONTEXT.pool_id
    first = parse_config(RICH, pool_type=PoolType.k8s)
    store = Store(database_url)
    try:
        async with store.unit_of_work() as uow:
            await uow.pools.add(NewPool(pool_id, "p", "", PoolType.k8s, first, "t", NOW))
        # As a server that does not know the column saves a configuration.
        other = {**RICH, "image": "busybox:3"}
        with engine.begin() as connection:
            connection.execute(
                POOLS.update()
                .where(POOLS.c.pool_id == pool_id)
                .values(k8s_config=other, revision=POOLS.c.revision + 1)
            )
        expected = pod_config_hash(PoolConfig.model_validate(other), CONTEXT)
        for description in (None, "later"):  # read as it is, and after another edit
            async with store.unit_of_work() as uow:
                if description is not None:
                    await uow.pools.update(pool_id, by="t", now=NOW, description=description)
                listed, _ = await uow.pools.list(limit=10, offset=0)
                got = await uow.pools.get(pool_id)
            assert got is not None
            assert [hash_of(p) for p in listed] == [hash_of(got)] == [expected]
            fields, at, revision = stored(engine)[pool_id]
            assert (fields, at) == (pod_fields(first), 1)
            assert revision > 1
        async with store.unit_of_work() as uow:  # the next save makes them current again
            await uow.pools.update(
                pool_id, by="t", now=NOW, config=StoredConfig.of(PoolType.k8s, first)
            )
        assert stored(engine)[pool_id] == (pod_fields(first), 4, 4)
    finally:
        await store.close()
