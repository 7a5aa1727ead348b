"""Signals said inside a unit of work reach the subscribers only when it commits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from slotpool.domain.signals import Signal
from slotpool.store.uow import Store


class Boom(Exception):
    pass


async def test_signals_are_published_after_commit_only(store: Store) -> None:
    seen: list[list[Signal]] = []

    def subscriber(signals: Sequence[Signal]) -> None:
        seen.append(list(signals))

    store.subscribe(subscriber)
    async with store.unit_of_work() as uow:
        uow.signal(Signal.task("tsk-a"), Signal.pool("ap-a"), Signal.task("tsk-a"))
        assert seen == [], "nothing is published before the commit"
    assert seen == [[Signal.task("tsk-a"), Signal.pool("ap-a")]]

    async def refused() -> None:
        async with store.unit_of_work() as uow:
            uow.signal(Signal.task("tsk-b"))
            raise Boom

    with pytest.raises(Boom):
        await refused()
    assert seen == [[Signal.task("tsk-a"), Signal.pool("ap-a")]], "a rollback publishes nothing"

    async with store.unit_of_work():
        pass
    assert len(seen) == 1, "a unit of work without signals publishes nothing"
