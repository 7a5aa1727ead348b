"""The agent's slots (free, busy, reserved) and the tasks' working directories.

A task keeps its slot and its working directory from its first step to its last, also while it
waits for an approval; this table is the one place that knows which slot holds what, so the
claim (free and reserved slots), the heartbeat (running steps) and register after a reconnect all
report the same picture. A step stays "running" here until its result has been delivered: for
the control plane it is running until then, and a re-register that left it out would make the
control plane declare it lost.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

from slotpool.agent.isolation import StepUser
from slotpool.agent.process import Cancellation
from slotpool.protocol import Assignment, ProtocolError, ResultAnswer, RunningStep

log = structlog.get_logger(__name__)
# Task ids become directory names: anything else could escape the work directory.
_SAFE_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_task_id(task_id: str) -> bool:
    return bool(_SAFE_TASK_ID.match(task_id))


class SlotConflict(Exception):
    """An assignment for a slot that holds another task (or does not exist)."""


class SlotStillBusy(SlotConflict):
    """The slot still holds the step that just ended: its result and the claim answering the next
    task crossed. The control plane answers again once the slot is offered free."""


class AlreadyRunning(Exception):
    """The same step was handed out again (say, after a lost claim answer): it already runs."""


class WorkdirError(Exception):
    """A step cannot have its working directory; the step fails with this message."""


class Workdirs:
    """``work_dir/<task_id>``: created on a task's first step, deleted when it is released;
    owned by the step user if steps run as one (``isolation.py``)."""

    def __init__(self, root: Path, owner: StepUser | None = None) -> None:
        self.root = root
        self._owner = owner

    def path(self, task_id: str) -> Path:
        if not safe_task_id(task_id):
            raise WorkdirError(f"task id {task_id!r} cannot name a working directory")
        return self.root / task_id

    async def prepare(self, assignment: Assignment) -> Path:
        path = self.path(assignment.task_id)
        if assignment.new_workdir and _new_directory(path, self._owner):
            return path  # the usual first step: one mkdir, no thread needed
        # A checkout left behind can hold many files: the event loop (heartbeats) goes on
        # meanwhile.
        await asyncio.to_thread(_make, path, fresh=assignment.new_workdir, owner=self._owner)
        return path

    async def remove(self, task_id: str) -> None:
        if not safe_task_id(task_id):
            return
        path = self.root / task_id
        try:
            path.rmdir()  # empty (a step that left nothing): no thread needed
        except FileNotFoundError:
            return
        except OSError:  # files in it, maybe many: deleted off the event loop
            await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)


def _new_directory(path: Path, owner: StepUser | None) -> bool:
    """Create ``path`` (its parent exists) for a first step; False if it exists already or
    cannot be made this way (``_make`` then says why)."""
    try:
        path.mkdir()
    except OSError:
        return False
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    return True


def _make(path: Path, *, fresh: bool, owner: StepUser | None) -> None:
    if fresh:
        shutil.rmtree(path, ignore_errors=True)  # left over by an earlier agent of this name
    elif not path.is_dir():
        # A later step whose directory is gone (the agent restarted while the task waited): the
        # step itself says best what it misses, so it runs in a fresh directory.
        log.warning("working directory missing: created afresh", path=str(path))
    path.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)


@dataclass
class _Slot:
    index: int
    task_id: str | None = None
    step_index: int | None = None  # None with a task: reserved
    cancellation: Cancellation | None = None
    release_after: bool = False  # released while a step ran: free the slot once it has ended

    def clear(self) -> None:
        self.task_id, self.step_index, self.cancellation = None, None, None
        self.release_after = False


class SlotTable:
    def __init__(self, count: int, workdirs: Workdirs) -> None:
        self._slots = [_Slot(index) for index in range(count)]
        self.workdirs = workdirs
        self.changed = asyncio.Event()  # set whenever a slot becomes free or reserved
        self._closing: str | None = None

    def free(self) -> list[int]:
        return [s.index for s in self._slots if s.task_id is None]

    def reserved(self) -> list[int]:
        return [s.index for s in self._slots if s.task_id and s.step_index is None]

    def running(self) -> list[RunningStep]:
        return [
            RunningStep(task_id=s.task_id, step_index=s.step_index, slot=s.index)
            for s in self._slots
            if s.task_id is not None and s.step_index is not None
        ]

    def begin(self, assignment: Assignment, *, continuing: bool = False) -> Cancellation:
        """Mark the assignment's slot busy; its cancellation is what stops the step."""
        slot = self._slot(assignment)
        if slot.task_id == assignment.task_id and slot.step_index == assignment.step_index:
            raise AlreadyRunning(f"{assignment.task_id} step {assignment.step_index}")
        if slot.task_id not in (None, assignment.task_id) or (
            slot.step_index is not None and not continuing
        ):
            raise SlotStillBusy(f"slot {slot.index} holds task {slot.task_id}")
        slot.task_id, slot.step_index = assignment.task_id, assignment.step_index
        slot.cancellation = Cancellation()
        if self._closing is not None:
            slot.cancellation.request(self._closing)
        return slot.cancellation

    async def end_step(
        self, slot_index: int, answer: ResultAnswer
    ) -> tuple[Assignment, Cancellation] | None:
        """Apply a result's answer: the next step to run in this slot (begun), or None. A new
        task the answer brings for the freed slot (``then``) is begun there at once."""
        slot = self._slots[slot_index]
        following = answer.next
        if following is not None and following.task_id != slot.task_id:
            raise ProtocolError(f"next step of {slot.task_id} is for {following.task_id}")
        if answer.then is not None and answer.then.slot != slot_index:
            raise ProtocolError(f"slot {slot_index}'s answer brought a task for {answer.then.slot}")
        if slot.release_after or (following is None and not answer.reserve):
            if answer.then is None:
                await self._release(slot)
                return None
            return await self._hand_over(slot, answer.then)
        if answer.then is not None:
            raise ProtocolError("a new task came for a slot that is not freed")
        if following is not None:
            following = following.model_copy(update={"slot": slot_index})  # "in the same slot"
            return following, self.begin(following, continuing=True)
        slot.step_index, slot.cancellation = None, None
        self.changed.set()
        return None

    def cancel(self, task_id: str, reason: str) -> None:
        for slot in self._slots:
            if slot.task_id == task_id and slot.cancellation is not None:
                slot.cancellation.request(reason)

    def cancel_all(self, reason: str) -> None:
        """Stop every step, and any step that would start from now on."""
        self._closing = reason
        for slot in self._slots:
            if slot.cancellation is not None:
                slot.cancellation.request(reason)

    async def release(self, task_id: str) -> None:
        """The task's reservation ended: free its slot and delete its working directory."""
        for slot in self._slots:
            if slot.task_id != task_id:
                continue
            if slot.step_index is None:
                await self._release(slot)
                return
            slot.release_after = True
            self.cancel(task_id, "released by the control plane")
            return
        await self.workdirs.remove(task_id)

    async def _hand_over(self, slot: _Slot, then: Assignment) -> tuple[Assignment, Cancellation]:
        """The slot's task is over and ``then`` takes the slot at once: it is never seen free
        (a claim offering it meanwhile would be answered with ``then`` again), and the old
        task's directory is deleted after."""
        ended = slot.task_id
        slot.clear()
        cancellation = self.begin(then)  # the slot is empty, and nothing ran in between
        if ended is not None and ended != then.task_id:
            await self.workdirs.remove(ended)
        return then, cancellation

    async def _release(self, slot: _Slot) -> None:
        """Free the slot once its task's directory is deleted: a drain that sees every slot
        free leaves no directory behind, and a slot is never offered with one."""
        if slot.task_id is not None:
            await self.workdirs.remove(slot.task_id)
        slot.clear()
        self.changed.set()

    def _slot(self, assignment: Assignment) -> _Slot:
        if not 0 <= assignment.slot < len(self._slots):
            raise SlotConflict(f"there is no slot {assignment.slot}")
        return self._slots[assignment.slot]
