"""Signals round-trip through their wire form and compare by value (they key the waiters)."""

from __future__ import annotations

import pytest

from slotpool.domain.signals import Signal, Topic


@pytest.mark.parametrize(
    "signal",
    [
        Signal.task("tsk-1"),
        Signal.pod(42),
        Signal.pool("ap-x"),
        Signal.pool_config("ap:odd"),
        Signal.queued("ap-y"),
    ],
)
def test_encode_decode_round_trip(signal: Signal) -> None:
    assert Signal.decode(signal.encode()) == signal


def test_signals_are_values() -> None:
    assert Signal.pod(7) == Signal(Topic.pod, "7")
    assert len({Signal.pod(7), Signal.pod(7), Signal.task("7")}) == 2


def test_an_unknown_topic_is_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        Signal.decode("nope:1")
