"""Pods and their slots: what the controller records of the runtime, what agents report, and the
conditional UPDATEs that make a slot take and a drain exclusive.

A slot is taken with ``WHERE state = 'idle'`` on a pod written first (and so locked) with
``WHERE state = 'ready'``; ``drain_if_idle`` writes the same pod row first. The row count says who
won, so no slot is given twice and no Pod is drained while a task is given to it, however many
requests or processes race, on SQLite and PostgreSQL alike. Once taken, a slot changes only
with its task (reserved, busy again, freed), through ``TaskRepository.apply``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Update

from slotpool.domain.pods import (
    ENDED_STATES,
    EndCause,
    Pod,
    PodCapacity,
    PodEnd,
    PodState,
    Slot,
    SlotState,
)
from slotpool.domain.tasks import TaskStatus
from slotpool.store.advisory import lock_key
from slotpool.store.dialect import rowcount
from slotpool.store.models import PodRow, SlotRow, TaskRow
from slotpool.store.statements import refresh_if_loaded


@dataclass(frozen=True)
class ReadyPod:
    """A ready pod as the dispatcher needs it: its name (the task records it) and its capacity."""

    name: str
    capacity: PodCapacity


def _pod(row: Any, slots: Sequence[Any]) -> Pod:
    """A pod from its row and its slots' rows: mapped objects or rows of the tables' columns."""
    return Pod(
        id=row.id,
        pool_id=row.pool_id,
        name=row.name,
        state=PodState(row.state),
        config_hash=row.config_hash,
        reason=row.reason,
        agent_version=row.agent_version,
        registered_at=row.registered_at,
        last_heartbeat_at=row.last_heartbeat_at,
        created_at=row.created_at,
        slots=tuple(
            Slot(index=s.slot_index, state=SlotState(s.state), task_id=s.task_id, since=s.since)
            for s in sorted(slots, key=lambda s: s.slot_index)
        ),
        phase=row.phase,
        node=row.node,
        updated_at=row.updated_at,
        end=None if row.end_cause is None else PodEnd(EndCause(row.end_cause), row.end_by),
        uid_digest=row.uid_digest,
        has_credential=row.credential_digest is not None,
    )


_ENDED = [state.value for state in ENDED_STATES]
# Drained on request: only a Pod that could still take work (not already on its way out).
_DRAINABLE = [PodState.pending.value, PodState.starting.value, PodState.ready.value]


def _first_end(end: PodEnd) -> dict[str, Any]:
    """Values that write ``end`` unless the row already says why it ends (the first reason
    wins: a Pod an admin drained stays "drained by" them when the controller deletes it)."""
    return {
        "end_cause": func.coalesce(PodRow.end_cause, end.cause.value),
        "end_by": case((PodRow.end_cause.is_(None), end.by), else_=PodRow.end_by),
    }


@dataclass(frozen=True)
class Heard:
    """What an agent's heartbeat (or claim) learns of its pod in the same statement."""

    state: PodState
    slots: int
    cancel_requested: bool  # a task running there was asked to cancel


# The agent protocol's and the dispatcher's statements, built once (store/statements.py).
_PODS: Table = PodRow.__table__  # type: ignore[assignment]
_P = _PODS.c
_SLOTS: Table = SlotRow.__table__  # type: ignore[assignment]
_S = _SLOTS.c
_T = TaskRow.__table__.c
_READY = PodState.ready.value

_POOL_PODS = select(_PODS).where(_P.pool_id == bindparam("b_pool")).order_by(_P.id)
_POOL_PODS_IN = (
    select(_PODS)
    .where(_P.pool_id == bindparam("b_pool"), _P.state.in_(bindparam("b_states", expanding=True)))
    .order_by(_P.id)
)
_SLOTS_OF = select(_SLOTS).where(_S.pod_id.in_(bindparam("b_pods", expanding=True)))
_DISPATCH_TURN = select(func.pg_advisory_xact_lock(bindparam("b_key")))
_BY_CREDENTIAL = select(_P.pool_id, _P.id, _P.name).where(
    _P.credential_digest == bindparam("b_digest")
)
# On pod_id, not correlated: SQLite's RETURNING drops table names.
_CANCEL_ASKED = (
    select(_T.id)
    .where(
        _T.pod_id == bindparam("b_id"),
        _T.status == TaskStatus.running.value,
        _T.cancel_requested.is_(True),
    )
    .exists()
)
_HEARD = (
    _PODS.update()
    .where(_P.id == bindparam("b_id"), _P.state.not_in(_ENDED))
    .returning(_P.state, _P.slots, _CANCEL_ASKED)
)
_HEARTBEAT = _HEARD.values(last_heartbeat_at=bindparam("b_now"), updated_at=bindparam("b_now"))
_HEARTBEAT_DRAINING = _HEARD.values(
    last_heartbeat_at=bindparam("b_now"),
    updated_at=bindparam("b_now"),
    state=case((_P.state == _READY, PodState.draining.value), else_=_P.state),
)
_READY_SLOTS = (
    select(_P.id, _P.name, _P.config_hash, _S.slot_index, _S.state)
    .join(_SLOTS, _S.pod_id == _P.id)
    .where(_P.pool_id == bindparam("b_pool"), _P.state == _READY)
    .order_by(_P.id, _S.slot_index)
)
_LOCK_READY = (
    _PODS.update()
    .where(_P.id == bindparam("b_id"), _P.state == _READY)
    .values(updated_at=bindparam("b_now"))
)
_TAKE_SLOT = (
    _SLOTS.update()
    .where(
        _S.pod_id == bindparam("b_id"),
        _S.slot_index == bindparam("b_slot"),
        _S.state == SlotState.idle.value,
    )
    .values(state=SlotState.busy.value, task_id=bindparam("b_task"), since=bindparam("b_now"))
)


_OBSERVED: dict[tuple[str, ...], Update] = {}


def _observed(kept: tuple[str, ...]) -> Update:
    """``observed``'s UPDATE, the states in ``kept`` left as they are (built once for each)."""
    statement = _OBSERVED.get(kept)
    if statement is None:
        state: Any = bindparam("b_state", type_=_P.state.type)
        if kept:
            state = case((_P.state.in_(kept), _P.state), else_=state)
        statement = (
            _PODS.update()
            .where(_P.id == bindparam("b_id"), _P.state.not_in(_ENDED))
            .values(
                state=state,
                phase=bindparam("b_phase"),
                node=bindparam("b_node"),
                reason=bindparam("b_reason"),
                updated_at=bindparam("b_now"),
            )
        )
        _OBSERVED[kept] = statement
    return statement


class PodRepository:
    def __init__(self, session: AsyncSession, backend: str = "sqlite") -> None:
        self._session = session
        self._backend = backend

    async def dispatch_turn(self, pool_id: str) -> None:
        """Wait until no other transaction places tasks in the pool (on PostgreSQL, a transaction
        advisory lock, given back at commit): two server processes dispatching one pool at once
        read different snapshots and could lock its pods and tasks in opposite orders (a
        deadlock). Within a process the dispatcher already takes turns; SQLite has one writer.
        Taken before the pool's slots are read, so the read sees what the last turn committed."""
        if self._backend != "postgresql":
            return
        await self._session.execute(_DISPATCH_TURN, {"b_key": lock_key(f"dispatch:{pool_id}")})

    async def register(
        self,
        *,
        pool_id: str,
        name: str,
        slots: int,
        version: str,
        config_hash: str | None,
        credential_digest: str | None,
        now: datetime,
    ) -> Pod:
        """Create the pod with idle slots, or mark a known one ready again (a reconnect).

        ``credential_digest`` is given when a new agent registers (its credential replaces any
        earlier one, and a static agent's name retired before is in service again), None when
        the agent that holds the credential reconnects. A pod slotpool created keeps the config
        hash it was built with and stays ``draining`` if it was draining; ``config_hash`` is for
        pods nobody recorded (static agents)."""
        row = await self._session.scalar(
            select(PodRow).where(PodRow.pool_id == pool_id, PodRow.name == name)
        )
        if row is None:
            row = await self._new_row(pool_id, name, slots, config_hash, PodState.ready, now)
        # Only a pod on its way in becomes ready. One slotpool is draining, deleting or has
        # retired stays so: an agent that reconnects (say after a control-plane restart) must
        # not put a Pod that is being deleted back into service.
        coming = [PodState.pending.value, PodState.starting.value]
        if credential_digest is not None:
            row.credential_digest = credential_digest
            coming.append(PodState.failed.value)  # only static names get here retired
        if row.state in coming:
            row.state = PodState.ready.value
        row.agent_version = version
        row.config_hash = row.config_hash or config_hash
        row.registered_at = row.last_heartbeat_at = row.updated_at = now
        row.reason = ""
        await self._session.flush()
        pod = await self.get(row.id)
        assert pod is not None
        return pod

    async def _new_row(
        self,
        pool_id: str,
        name: str,
        slots: int,
        config_hash: str | None,
        state: PodState,
        now: datetime,
        **observed: Any,
    ) -> PodRow:
        row = PodRow(
            pool_id=pool_id,
            name=name,
            slots=slots,
            state=state.value,
            config_hash=config_hash,
            updated_at=now,
            **{"reason": "", "created_at": now, **observed},
        )
        self._session.add(row)
        await self._session.flush()
        for index in range(slots):
            self._session.add(SlotRow(pod_id=row.id, slot_index=index, state="idle", since=now))
        await self._session.flush()
        return row

    async def adopt(
        self,
        *,
        pool_id: str,
        name: str,
        slots: int,
        config_hash: str | None,
        state: PodState,
        phase: str,
        node: str | None,
        reason: str,
        created_at: datetime,
        uid_digest: str | None,
        now: datetime,
    ) -> int:
        """Record a pod the runtime reports and the database does not know yet (one slotpool
        just created, or one found in the cluster with the pool's labels); returns its id.
        ``uid_digest`` is what its agent proves itself with (``domain.agent_identity``)."""
        row = await self._new_row(
            pool_id,
            name,
            slots,
            config_hash,
            state,
            now,
            phase=phase,
            node=node,
            reason=reason,
            created_at=created_at,
            uid_digest=uid_digest,
        )
        return row.id

    async def by_credential(self, digest: str) -> tuple[str, int, str] | None:
        """The pool id, pod id and name of the pod whose agent holds the credential of this
        digest: one indexed read, on every call an agent makes."""
        found = (await self._session.execute(_BY_CREDENTIAL, {"b_digest": digest})).first()
        return None if found is None else (found.pool_id, found.id, found.name)

    async def observed(
        self,
        pod_id: int,
        *,
        state: PodState,
        phase: str,
        node: str | None,
        reason: str,
        now: datetime,
    ) -> None:
        """What the runtime reports now; a row that already ended is left alone.

        A running Pod's state (``starting``, or the ``ready``/``draining`` the caller read) never
        overwrites ``ready``, ``draining`` or ``terminating`` (the rule of ``state_from_runtime``),
        decided in the UPDATE itself: the agent may have registered, or started draining, or
        slotpool may have begun deleting the Pod between the caller's read and this write, and
        none of that may be undone by it."""
        kept: tuple[str, ...] = ()
        if state in (PodState.starting, PodState.ready, PodState.draining):
            kept = (PodState.ready.value, PodState.draining.value, PodState.terminating.value)
        elif state is PodState.pending:  # a Pod drained (or deleted) while pending stays so
            kept = (PodState.draining.value, PodState.terminating.value)
        values: dict[str, Any] = {"b_id": pod_id, "b_state": state.value, "b_phase": phase}
        values |= {"b_node": node, "b_reason": reason, "b_now": now}
        await self._session.execute(_observed(kept), values)
        await refresh_if_loaded(self._session, PodRow, (pod_id,))

    async def forget(self, pod_ids: Sequence[int]) -> None:
        """Delete the records (and slots) of ended pods; tasks keep the pod's name."""
        if pod_ids:
            await self._session.execute(delete(SlotRow).where(SlotRow.pod_id.in_(pod_ids)))
            await self._session.execute(delete(PodRow).where(PodRow.id.in_(pod_ids)))

    async def get(self, pod_id: int) -> Pod | None:
        row = await self._session.get(PodRow, pod_id, populate_existing=True)
        if row is None:
            return None
        slots = await self._session.scalars(
            select(SlotRow)
            .where(SlotRow.pod_id == pod_id)
            .execution_options(populate_existing=True)
        )
        return _pod(row, list(slots))

    async def find(self, pool_id: str, name: str) -> Pod | None:
        pod_id = await self._session.scalar(
            select(PodRow.id).where(PodRow.pool_id == pool_id, PodRow.name == name)
        )
        return None if pod_id is None else await self.get(pod_id)

    async def of_pool(self, pool_id: str, *, states: Sequence[PodState] = ()) -> list[Pod]:
        """The pool's pods with their slots; only those in ``states`` if any are given. Two
        statements built once (every controller pass reads this): rows, not mapped objects."""
        if states:
            values = {"b_pool": pool_id, "b_states": [s.value for s in states]}
            rows = list(await self._session.execute(_POOL_PODS_IN, values))
        else:
            rows = list(await self._session.execute(_POOL_PODS, {"b_pool": pool_id}))
        by_pod: dict[int, list[Any]] = {}
        if rows:
            slots = await self._session.execute(_SLOTS_OF, {"b_pods": [r.id for r in rows]})
            for slot in slots:
                by_pod.setdefault(slot.pod_id, []).append(slot)
        return [_pod(row, by_pod.get(row.id, [])) for row in rows]

    async def heartbeat(self, pod_id: int, *, now: datetime, draining: bool) -> Heard | None:
        """The agent is alive; with ``draining`` (it got SIGTERM) a ready pod takes no more tasks.
        One statement, which also says the pod's state after it, its number of slots, and
        whether a task running there was asked to cancel (so that a heartbeat with nothing to
        say reads nothing more); None if the pod has ended (or is gone)."""
        statement = _HEARTBEAT_DRAINING if draining else _HEARTBEAT
        row = (await self._session.execute(statement, {"b_id": pod_id, "b_now": now})).first()
        if row is None:
            return None
        await refresh_if_loaded(self._session, PodRow, (pod_id,))
        return Heard(PodState(row[0]), row[1], bool(row[2]))

    async def set_state(self, pod_id: int, state: PodState, *, reason: str, now: datetime) -> None:
        await self._session.execute(
            update(PodRow)
            .where(PodRow.id == pod_id)
            .values(state=state.value, reason=reason, updated_at=now)
        )

    async def retire(self, pod_id: int, end: PodEnd, *, reason: str, now: datetime) -> None:
        """The Pod's life is over: ``deleted`` or ``failed`` as ``end`` says, and why."""
        await self._session.execute(
            update(PodRow)
            .where(PodRow.id == pod_id)
            .values(
                state=end.state.value,
                end_cause=end.cause.value,
                end_by=end.by,
                reason=reason,
                updated_at=now,
            )
        )

    async def terminating(self, pod_id: int, end: PodEnd, *, reason: str, now: datetime) -> None:
        """Slotpool deleted the Pod in the runtime: ``terminating`` until it is gone (a row that
        already ended is left alone)."""
        await self._session.execute(
            update(PodRow)
            .where(PodRow.id == pod_id, PodRow.state.not_in(_ENDED))
            .values(
                state=PodState.terminating.value, reason=reason, updated_at=now, **_first_end(end)
            )
        )

    async def drain(self, pod_id: int, *, by: str, reason: str, now: datetime) -> bool:
        """Drain on request: the Pod takes no new task from now on (``take_slot`` wants it
        ``ready``, and writes this row first, so no task is given to it after this commits);
        the controller deletes it once its slots are idle. False if it was already on its way
        out (draining, terminating or ended): nothing is changed then."""
        result = await self._session.execute(
            update(PodRow)
            .where(PodRow.id == pod_id, PodRow.state.in_(_DRAINABLE))
            .values(
                state=PodState.draining.value,
                end_cause=EndCause.drained.value,
                end_by=by,
                reason=reason,
                updated_at=now,
            )
        )
        return rowcount(result) == 1

    async def silent(self, *, heard_before: datetime) -> list[Pod]:
        """Pods whose agent has not been heard from since ``heard_before``."""
        ids = await self._session.scalars(
            select(PodRow.id).where(
                PodRow.state.in_([PodState.ready.value, PodState.draining.value]),
                PodRow.last_heartbeat_at < heard_before,
            )
        )
        pods = [await self.get(pod_id) for pod_id in ids]
        return [p for p in pods if p is not None]

    async def ready_slots(self, pool_id: str) -> list[ReadyPod]:
        """The pool's ``ready`` pods with their slots, as the dispatcher places tasks on them, in
        one query (no idle slot among them: no room, and under a burst into a full pool that is
        the dispatcher's only question). A pod without slot rows has no room and is left out."""
        rows = await self._session.execute(_READY_SLOTS, {"b_pool": pool_id})
        found: dict[int, tuple[str, str | None, list[int], int]] = {}
        for pod_id, name, config_hash, index, state in rows:
            _, _, idle, used = found.setdefault(pod_id, (name, config_hash, [], 0))
            if state == SlotState.idle.value:
                idle.append(index)
            else:
                found[pod_id] = (name, config_hash, idle, used + 1)
        return [
            ReadyPod(name, PodCapacity(pod_id, PodState.ready, config_hash, tuple(idle), used))
            for pod_id, (name, config_hash, idle, used) in found.items()
        ]

    async def take_slot(self, pod_id: int, index: int, *, task_id: str, now: datetime) -> bool:
        """Give the idle slot to ``task_id`` if the pod is still ``ready``.

        The pod's row is written (and so locked) first, the same row ``drain_if_idle`` writes
        first: a pod cannot be drained and given a task at once (no write skew on PostgreSQL)."""
        locked = await self._session.execute(_LOCK_READY, {"b_id": pod_id, "b_now": now})
        if rowcount(locked) != 1:
            return False
        values = {"b_id": pod_id, "b_slot": index, "b_task": task_id, "b_now": now}
        taken = rowcount(await self._session.execute(_TAKE_SLOT, values)) == 1
        await refresh_if_loaded(self._session, PodRow, (pod_id,))
        await refresh_if_loaded(self._session, SlotRow, (pod_id, index))
        return taken

    async def drain_if_idle(self, pod_id: int, end: PodEnd, *, reason: str, now: datetime) -> bool:
        """Mark the pod ``draining`` if every slot is idle, in one transaction: from then on no
        task can be given to it (``take_slot`` wants ``ready``), so it can be deleted safely.
        ``end`` says why it goes, unless the row already says so."""
        before = (
            await self._session.execute(
                select(PodRow.state, PodRow.reason, PodRow.end_cause, PodRow.end_by).where(
                    PodRow.id == pod_id
                )
            )
        ).one_or_none()
        if before is None or before.state in (*_ENDED, PodState.terminating.value):
            return False
        state = before.state
        locked = await self._session.execute(
            update(PodRow)
            .where(PodRow.id == pod_id, PodRow.state == state)
            .values(state=PodState.draining.value, reason=reason, updated_at=now, **_first_end(end))
        )
        if rowcount(locked) != 1:
            return False
        # After the write: on PostgreSQL this statement sees every slot committed before it.
        used = await self._session.scalar(
            select(func.count())
            .select_from(SlotRow)
            .where(SlotRow.pod_id == pod_id, SlotRow.state != SlotState.idle.value)
        )
        if used:
            await self._session.execute(
                update(PodRow)
                .where(PodRow.id == pod_id)
                .values(
                    state=state,
                    reason=before.reason,
                    end_cause=before.end_cause,
                    end_by=before.end_by,
                    updated_at=now,
                )
            )
            return False
        return True
