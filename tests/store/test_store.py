"""The store on real SQLite and PostgreSQL: migrations from empty, round trips, constraints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, inspect

from slotpool.domain.config import PoolConfig, PoolType, parse_config, stored_form
from slotpool.domain.events import NewEvent, Outcome
from slotpool.domain.freeze import FreezeSchedule
from slotpool.store.db import sync_url
from slotpool.store.errors import Conflict
from slotpool.store.migrate import current_revision, downgrade, head_revision, upgrade
from slotpool.store.pools import NewPool
from slotpool.store.uow import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_go_up_from_empty_and_back(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    assert {"agent_pools", "freeze_schedules", "admin_tokens"} <= tables(database_url)
    downgrade(database_url, "base")
    assert tables(database_url) <= {"alembic_version"}
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()


def new_pool(pool_id: str, name: str, config: PoolConfig | None = None) -> NewPool:
    return NewPool(
        pool_id=pool_id,
        name=name,
        description="",
        pool_type=PoolType.k8s,
        config=config,
        by="test",
        now=NOW,
    )


async def test_pool_round_trip_keeps_json_and_aware_times(store: Store) -> None:
    config = parse_config(
        {"image": "busybox", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}},
        pool_type=PoolType.k8s,
    )
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-aaaaaaaaaaaaaaaa", "a", config))
    async with store.unit_of_work() as uow:
        pool = await uow.pools.get("pool-aaaaaaaaaaaaaaaa")
    await store.close()
    assert pool is not None
    assert pool.config is not None
    assert stored_form(pool.config) == stored_form(config)
    assert pool.created_at == NOW
    assert pool.created_at.tzinfo is not None


async def test_times_in_other_zones_come_back_as_the_same_instant(store: Store) -> None:
    eastern = NOW.astimezone(timezone(timedelta(hours=-5)))
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-bbbbbbbbbbbbbbbb", "b"))
        await uow.pools.update("pool-bbbbbbbbbbbbbbbb", by="t", now=eastern)
    async with store.unit_of_work() as uow:
        pool = await uow.pools.get("pool-bbbbbbbbbbbbbbbb")
    await store.close()
    assert pool is not None
    assert pool.updated_at == NOW
    assert pool.updated_at.utcoffset() == timedelta(0)


async def test_unique_names_and_rollback_on_error(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-cccccccccccccccc", "same"))
    with pytest.raises(Conflict):
        async with store.unit_of_work() as uow:
            await uow.pools.add(new_pool("pool-dddddddddddddddd", "same"))
    async with store.unit_of_work() as uow:
        _, total = await uow.pools.list(limit=10, offset=0)
    await store.close()
    assert total == 1


async def test_windows_keep_order_and_go_with_their_pool(store: Store) -> None:
    windows = [
        FreezeSchedule(id=f"fs-00000000000{i}", from_time="01:00", to_time="02:00", weekdays=[i])
        for i in (3, 1, 2)
    ]
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-eeeeeeeeeeeeeeee", "e"))
        await uow.pools.replace_schedules("pool-eeeeeeeeeeeeeeee", windows, now=NOW)
    async with store.unit_of_work() as uow:
        pool = await uow.pools.get("pool-eeeeeeeeeeeeeeee")
        assert pool is not None
        assert list(pool.freeze_schedules) == windows
        assert await uow.pools.delete("pool-eeeeeeeeeeeeeeee")
    # The windows went with the pool (ON DELETE CASCADE): the id can be used again.
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-ffffffffffffffff", "f"))
        await uow.pools.replace_schedules("pool-ffffffffffffffff", windows[:1], now=NOW)
        pool = await uow.pools.get("pool-ffffffffffffffff")
    await store.close()
    assert pool is not None
    assert [w.id for w in pool.freeze_schedules] == ["fs-000000000003"]


async def test_a_pool_read_only_is_the_pool_read_for_a_change(store: Store) -> None:
    """``read`` (rows, for the passes) and ``get`` (mapped objects, for a change) agree, windows
    in order included; ``read`` sees what its own unit of work changed."""
    windows = [
        FreezeSchedule(id=f"fs-00000000000{i}", from_time="01:00", to_time="02:00", weekdays=[i])
        for i in (2, 1)
    ]
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-eeeeeeeeeeeeeeee", "e"))
        await uow.pools.replace_schedules("pool-eeeeeeeeeeeeeeee", windows, now=NOW)
    async with store.unit_of_work() as uow:
        read = await uow.pools.read("pool-eeeeeeeeeeeeeeee")
        missing = await uow.pools.read("pool-ffffffffffffffff")
    async with store.unit_of_work() as uow:
        got = await uow.pools.get("pool-eeeeeeeeeeeeeeee")
        await uow.pools.replace_schedules("pool-eeeeeeeeeeeeeeee", windows[:1], now=NOW)
        changed = await uow.pools.read("pool-eeeeeeeeeeeeeeee")
    await store.close()
    assert read is not None
    assert read == got
    assert list(read.freeze_schedules) == windows
    assert missing is None
    assert changed is not None
    assert [w.id for w in changed.freeze_schedules] == ["fs-000000000002"]


def test_the_migration_chain_matches_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from slotpool.store.models import Base

    upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


async def test_an_event_naming_many_pods_is_kept_whole(store: Store) -> None:
    """A ``create_pods`` event names every Pod it created: longer than one Pod name may be (the
    dispatch benchmark found PostgreSQL refusing it when the column was ``varchar(253)``)."""
    names = ", ".join(f"slotpool-pool-0123456789abcdef-{i:05d}" for i in range(40))
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-0123456789abcdef", "many"))
        event = NewEvent(
            action="create_pods",
            reason="scale_up",
            message="creating 40",
            outcome=Outcome.done,
            inputs={},
            pod=names,
        )
        await uow.events.add("pool-0123456789abcdef", [event], now=NOW)
    async with store.unit_of_work() as uow:
        last = await uow.events.last("pool-0123456789abcdef")
    assert last is not None
    assert last.pod == names
