"""What a committed change tells the rest of the control plane: a task's state or log moved, a
pod has work to pick up, a pool needs its controller to look again.

Signals are plain values. A unit of work collects them while it writes and hands them on only
when its transaction commits, so nobody is woken to look at a change that was rolled back, and
nobody forgets to wake anyone: the write and its signal are made in the same place. They carry
only a topic and a key, so they can travel between server processes as a short string.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Topic(StrEnum):
    task = "task"  # the task's state or log changed: followers and waiters look again
    pod = "pod"  # the pod's slots changed: its agent's waiting claim looks again
    pool = "pool"  # demand or capacity changed: the pool's controller passes again
    pool_config = "pool_config"  # the pool was created or configured: read it again
    queued = "queued"  # a task joined the pool's queue: every dispatcher looks at it again
    leadership = "leadership"  # the leader gave its lease up: the others stand for election now


@dataclass(frozen=True, slots=True)
class Signal:
    topic: Topic
    key: str

    @classmethod
    def task(cls, task_id: str) -> Signal:
        return cls(Topic.task, task_id)

    @classmethod
    def pod(cls, pod_id: int) -> Signal:
        return cls(Topic.pod, str(pod_id))

    @classmethod
    def pool(cls, pool_id: str) -> Signal:
        return cls(Topic.pool, pool_id)

    @classmethod
    def pool_config(cls, pool_id: str) -> Signal:
        return cls(Topic.pool_config, pool_id)

    @classmethod
    def queued(cls, pool_id: str) -> Signal:
        return cls(Topic.queued, pool_id)

    @classmethod
    def leadership(cls) -> Signal:
        return cls(Topic.leadership, "controller")

    def encode(self) -> str:
        """``topic:key``, the form that crosses process boundaries."""
        return f"{self.topic.value}:{self.key}"

    @classmethod
    def decode(cls, text: str) -> Signal:
        topic, _, key = text.partition(":")
        return cls(Topic(topic), key)
