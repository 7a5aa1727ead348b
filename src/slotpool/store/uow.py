"""The store's front door: one engine per process, one transaction per unit of work.

Services open a unit of work, call repositories (which only flush) and leave it; it commits on a
clean exit and rolls back on an exception, so a refused request leaves nothing behind.

An admin change is recorded with ``uow.audit(...)`` the same way: its audit line (logger
``slotpool.audit``) is written once the transaction has committed, and never for a rolled-back one.

What a change must tell others (a waiting agent, a log follower, the pool's controller) is said
with ``uow.signal(...)`` beside the write, and handed to the store's subscribers only once the
transaction has committed: a rolled-back change wakes nobody, and a committed one always does.

What only reads opens ``store.reading()`` instead: no transaction to commit (on PostgreSQL its
statements run in autocommit, each with its own snapshot, as a READ COMMITTED transaction's
would: no BEGIN and COMMIT round trips), no turn to wait for on SQLite, no lease to check for the
leader's work (a read changes nothing a newer leader could object to). A write tried in it is a
bug and fails (``ReadOnlyViolation``), before reaching the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import partial

import structlog
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from slotpool import metrics
from slotpool.domain.audit import AuditEntry
from slotpool.domain.leadership import fence
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import FINAL
from slotpool.domain.transitions import TaskChange
from slotpool.store.cluster import ClusterRepository
from slotpool.store.db import BUSY_SECONDS, backend, create_engine, create_sqlite_engine
from slotpool.store.errors import (
    ABORTED_STATES,
    DatabaseUnavailable,
    ReadOnlyViolation,
    TransactionAborted,
)
from slotpool.store.events import PoolEventRepository
from slotpool.store.history import PoolHistoryRepository
from slotpool.store.inline_sqlite import InlineSession, busy
from slotpool.store.pods import PodRepository
from slotpool.store.pools import PoolRepository
from slotpool.store.retention import RetentionRepository
from slotpool.store.stats import PoolStatsRepository
from slotpool.store.tasks import TaskRepository
from slotpool.store.tokens import AdminTokenRepository, PoolTokenRepository

# Set while the current task is inside a unit of work that holds the SQLite writer turn: a unit
# of work opened inside it (same task) does not wait for itself.
_HOLDING: ContextVar[bool] = ContextVar("slotpool_store_turn", default=False)

Subscriber = Callable[[Sequence[Signal]], None]

audit_log = structlog.get_logger("slotpool.audit")


def write_audit(*entries: AuditEntry) -> None:
    """The audit lines of changes that have been made."""
    for entry in entries:
        audit_log.info("admin change", **entry.fields())


class _Session(Session):
    """The units of work's sessions (``_only_what_is_loaded`` listens to them alone)."""


READ_ONLY = "slotpool_read_only"  # in ``Session.info`` of a ``Store.reading`` session


@event.listens_for(_Session, "do_orm_execute")
def _reads_only(state: ORMExecuteState) -> None:
    """A reading session runs SELECTs only."""
    if state.session.info.get(READ_ONLY) and not state.is_select:
        raise ReadOnlyViolation(f"a write in a read-only unit of work: {state.statement}")


@event.listens_for(_Session, "before_flush")
def _flushes_nothing(session: Session, *_: object) -> None:
    if session.info.get(READ_ONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlyViolation("objects added or changed in a read-only unit of work")


@event.listens_for(_Session, "do_orm_execute")
def _only_what_is_loaded(state: ORMExecuteState) -> None:
    """An UPDATE or DELETE synchronises the session's objects of its table only if the session
    holds some: SQLAlchemy's default ('auto', i.e. 'evaluate') compiles the statement's WHERE
    into a Python test and runs it over the loaded objects, before and after every statement,
    a few percent of the server's CPU under load, for nothing when none is loaded (most of the
    repositories' conditional UPDATEs). A statement that chose its own way keeps it."""
    if not (state.is_update or state.is_delete) or "synchronize_session" in state.execution_options:
        return
    mapper = state.bind_mapper
    if mapper is None:
        return
    mapped = mapper.class_
    loaded = state.session.identity_map.keys()  # (class, primary key, token) of each object
    if any(key[0] is mapped for key in loaded):
        return
    state.update_execution_options(synchronize_session=False)


class UnitOfWork:
    def __init__(self, session: AsyncSession, backend: str, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self.pools = PoolRepository(session)
        self.admin_tokens = AdminTokenRepository(session)
        self.pool_tokens = PoolTokenRepository(session)
        self.pods = PodRepository(session, backend)
        self.tasks = TaskRepository(session, backend)
        self.stats = PoolStatsRepository(session, backend)
        self.events = PoolEventRepository(session)
        self.history = PoolHistoryRepository(session, backend)
        self.retention = RetentionRepository(session)
        self.cluster = ClusterRepository(session, backend)
        self._signals: dict[Signal, None] = {}  # ordered, and each signal once
        self._committed: list[Callable[[], None]] = []
        self.audited: list[AuditEntry] = []

    async def apply(self, change: TaskChange) -> bool:
        """The one gate for task and slot state: the change is applied if its condition still
        holds, and then those it concerns are told once the unit of work commits."""
        applied = await self.tasks.apply(change)
        if applied:
            self.signal(*change.signals())
            if change.to in FINAL:
                self.after_commit(partial(metrics.task_ended, change))
        return applied

    def after_commit(self, then: Callable[[], None]) -> None:
        """Call ``then`` once this unit of work has committed (a metric of what it did)."""
        self._writing("after_commit")
        self._committed.append(then)

    def _writing(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyViolation(f"{what} in a read-only unit of work")

    def committed(self) -> None:
        for then in self._committed:
            then()

    def signal(self, *signals: Signal) -> None:
        """Tell the subscribers once this unit of work has committed (duplicates are sent once)."""
        self._writing("a signal")
        self._signals.update(dict.fromkeys(signals))

    def audit(self, entry: AuditEntry) -> None:
        """Write the audit line of this admin change once the unit of work has committed."""
        self._writing("an audit line")
        self.audited.append(entry)

    @property
    def signals(self) -> list[Signal]:
        """What this unit of work will tell its subscribers, in the order it was said."""
        return list(self._signals)


class Store:
    def __init__(self, url: str, *, idle_in_transaction_seconds: float | None = None) -> None:
        """``idle_in_transaction_seconds``: see ``db.create_engine`` (the server's lease)."""
        self.url = url
        self.backend = backend(url)
        self._engine: Engine | AsyncEngine
        self._sessions: Callable[[], AsyncSession]
        if self.backend == "sqlite":
            # Its sessions' calls are made at once, in the event loop's thread (inline_sqlite).
            inline = self._engine = create_sqlite_engine(url)
            self._sessions = partial(
                InlineSession,
                inline,
                busy_seconds=BUSY_SECONDS,
                sync_session_class=_Session,
                expire_on_commit=False,
            )
        else:
            self._engine = create_engine(
                url, idle_in_transaction_seconds=idle_in_transaction_seconds
            )
            self._sessions = async_sessionmaker(
                self._engine, expire_on_commit=False, sync_session_class=_Session
            )
        # SQLite has one writer at a time, and a writer that finds the database locked sleeps
        # in SQLite's busy handler (up to 100 ms a try). Units of work of this process take
        # turns here instead, in arrival order: under load that is the difference between
        # queueing for a few milliseconds and sleeping for hundreds. PostgreSQL needs no turns.
        self._turn = asyncio.Lock() if self.backend == "sqlite" else None
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with the signals of every unit of work that commits."""
        self._subscribers.append(subscriber)

    def _publish(self, uow: UnitOfWork) -> None:
        uow.committed()
        write_audit(*uow.audited)
        signals = uow.signals
        if signals:
            for subscriber in self._subscribers:
                subscriber(signals)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        if self._turn is None or _HOLDING.get():
            async with self._transaction() as uow:
                yield uow
            self._publish(uow)
            return
        async with self._turn:
            holding = _HOLDING.set(True)
            try:
                async with self._transaction() as uow:
                    yield uow
            finally:
                _HOLDING.reset(holding)
        self._publish(uow)  # after the turn is given back: subscribers may start new work

    @asynccontextmanager
    async def _session(self, *, reads_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A session, closed on the way out within the current task where nothing is left to
        send. ``AsyncSession``'s own exit closes it in a task of its own, shielded from a
        cancellation, and so costs every unit of work a pass of the event loop: whatever else
        was ready ran first, and a claim's answer, say, waited behind other requests for about
        1.5 ms. After a commit (or any read) closing sends nothing (the connection goes back
        to the pool idle) and cannot be interrupted halfway; after an error the rollback may
        still have to reach the database, and that close keeps SQLAlchemy's protection.
        ``reads_only``: a ``reading`` session, whose transaction, if any, holds nothing."""
        session = self._sessions()
        try:
            yield session
        except BaseException:
            await session.__aexit__(None, None, None)
            raise
        if session.in_transaction() and not reads_only:  # its rollback goes to the database
            await session.__aexit__(None, None, None)
        else:
            await session.close()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work that only reads (see the module's notes): it waits for no turn, checks
        no lease, commits nothing and refuses every write."""
        try:
            async with self._session(reads_only=True) as session:
                session.sync_session.info[READ_ONLY] = True
                if self.backend == "postgresql":
                    await session.connection(execution_options=_AUTOCOMMIT)
                yield UnitOfWork(session, self.backend, read_only=True)
        except DBAPIError as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            raise translated from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work of the leader's work (``domain.leadership.CURRENT``: the controller,
        the sweeper) is fenced: refused (``NotLeader``) once its lease ran out by this process's
        clock, and on PostgreSQL unless the lease row, share-locked for the transaction, still
        names its term. Requests are not: they pay nothing for it."""
        lease = fence()
        try:
            async with self._session() as session:
                if isinstance(session, InlineSession):  # SQLite: no lease row to hold
                    await session.begin_immediate()
                    yield UnitOfWork(session, self.backend)
                    await session.commit()
                    return
                async with session.begin():
                    uow = UnitOfWork(session, self.backend)
                    if lease is not None and not await uow.cluster.hold(
                        lease.replica_id, lease.term
                    ):
                        lease.lose("a newer term exists, or the lease ran out")
                        lease.check()
                    yield uow
        except DBAPIError as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            raise translated from exc

    async def ping(self) -> None:
        if isinstance(self._engine, AsyncEngine):
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        else:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        if isinstance(self._engine, AsyncEngine):
            await self._engine.dispose()
        else:
            self._engine.dispose()


_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def _translated(exc: DBAPIError) -> Exception | None:
    """What the services make of a failed statement; None: nothing but the error itself."""
    if exc.connection_invalidated:  # SQLAlchemy has dropped the pool's connections
        return DatabaseUnavailable("the connection to the database was lost")
    if getattr(exc.orig, "sqlstate", None) in ABORTED_STATES:
        return TransactionAborted(str(exc.orig))
    if busy(exc):  # SQLite, locked by another connection for longer than BUSY_SECONDS
        return TransactionAborted(f"the database stayed locked by another connection: {exc.orig}")
    return None
