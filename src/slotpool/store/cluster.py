"""The controller's lease and the registry of replicas (``leadership``, ``replicas``).

Every write of the lease is one conditional UPDATE whose condition says who wins: an election
succeeds only where nobody holds the lease or it ran out, a renewal only for the holder of that
very term. Times are the database's (``clock_timestamp()``) on PostgreSQL, so the replicas'
clocks do not matter; SQLite has one server, and takes them from this process.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, insert, literal, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.leadership import LeaderRecord, PodSettings, Replica
from slotpool.store.dialect import rowcount
from slotpool.store.models import LeadershipRow, ReplicaRow, UTCDateTime

CONTROLLER = "controller"


def _settings_text(settings: PodSettings) -> str:
    return json.dumps(settings.as_dict(), sort_keys=True)


def _settings_of(text: str | None) -> PodSettings | None:
    if text is None:
        return None
    try:
        return PodSettings.of(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None  # written by another version: as if none was published


class ClusterRepository:
    def __init__(self, session: AsyncSession, backend: str) -> None:
        self._session = session
        self._backend = backend

    def _now(self) -> ColumnElement[datetime]:
        if self._backend == "postgresql":
            return func.clock_timestamp().cast(UTCDateTime)  # not now(): the transaction's start
        return literal(datetime.now(UTC), UTCDateTime)

    def _later(self, seconds: float) -> ColumnElement[datetime]:
        if self._backend == "postgresql":
            return (func.clock_timestamp() + timedelta(seconds=seconds)).cast(UTCDateTime)
        return literal(datetime.now(UTC) + timedelta(seconds=seconds), UTCDateTime)

    # -- the lease -----------------------------------------------------------------------------

    async def acquire(
        self, replica_id: str, *, lease_seconds: float, settings: PodSettings, take_over: bool
    ) -> int | None:
        """Become the leader if nobody is (or the holder's lease ran out): the new term, or None
        when another replica holds the lease. ``take_over``: also from a holder of this same
        name (a restart of this replica: the old process is gone), or, on SQLite, from anyone
        (one server per database file, which its lock file makes sure of)."""
        row = LeadershipRow
        free: list[ColumnElement[bool]] = [row.replica_id.is_(None), row.expires_at < self._now()]
        if take_over:
            free.append(true() if self._backend == "sqlite" else row.replica_id == replica_id)
        term = await self._session.scalar(
            update(row)
            .where(row.name == CONTROLLER, or_(*free))
            .values(
                replica_id=replica_id,
                term=row.term + 1,
                acquired_at=self._now(),
                renewed_at=self._now(),
                expires_at=self._later(lease_seconds),
                pod_settings=_settings_text(settings),
                first_pass_at=None,
            )
            .returning(row.term)
        )
        return None if term is None else int(term)

    async def renew(
        self, replica_id: str, term: int, *, lease_seconds: float, settings: PodSettings
    ) -> datetime | None:
        """Extend the lease of ``term``, if this replica still holds it and it has not run out;
        the new end of the lease, or None (lost: someone else leads, or may)."""
        row = LeadershipRow
        expires: datetime | None = await self._session.scalar(
            update(row)
            .where(
                row.name == CONTROLLER,
                row.replica_id == replica_id,
                row.term == term,
                row.expires_at > self._now(),
            )
            .values(
                renewed_at=self._now(),
                expires_at=self._later(lease_seconds),
                pod_settings=_settings_text(settings),
            )
            .returning(row.expires_at)
        )
        return expires

    async def release(self, replica_id: str, term: int) -> bool:
        """Give the lease up (a replica that stops): the next election need not wait for it to
        run out. False if it was no longer this replica's."""
        row = LeadershipRow
        result = await self._session.execute(
            update(row)
            .where(row.name == CONTROLLER, row.replica_id == replica_id, row.term == term)
            .values(replica_id=None, expires_at=self._now())
        )
        return rowcount(result) == 1

    async def hold(self, replica_id: str, term: int) -> bool:
        """Whether ``term`` of ``replica_id`` still leads, its lease row share-locked until the
        transaction ends: a newer leader's election waits until then, so nothing this
        transaction writes lands after another replica was elected."""
        row = LeadershipRow
        found = await self._session.scalar(
            select(row.term)
            .where(
                row.name == CONTROLLER,
                row.replica_id == replica_id,
                row.term == term,
                row.expires_at > self._now(),
            )
            .with_for_update(read=True)
        )
        return found is not None

    async def first_pass(self, replica_id: str, term: int) -> None:
        """Record that the leader of ``term`` has passed over every pool once."""
        row = LeadershipRow
        await self._session.execute(
            update(row)
            .where(
                row.name == CONTROLLER,
                row.replica_id == replica_id,
                row.term == term,
                row.first_pass_at.is_(None),
            )
            .values(first_pass_at=self._now())
        )

    async def leader(self) -> LeaderRecord:
        row = LeadershipRow
        found = (
            await self._session.execute(
                select(
                    row.replica_id,
                    row.term,
                    row.acquired_at,
                    row.expires_at,
                    row.pod_settings,
                    row.first_pass_at,
                    self._now(),
                ).where(row.name == CONTROLLER)
            )
        ).one()
        return LeaderRecord(
            replica_id=found[0],
            term=int(found[1]),
            acquired_at=found[2],
            expires_at=found[3],
            pod_settings=_settings_of(found[4]),
            first_pass_at=found[5],
            now=found[6],
        )

    # -- the replicas --------------------------------------------------------------------------

    async def heartbeat(
        self,
        replica_id: str,
        *,
        host: str,
        pid: int,
        version: str,
        settings: PodSettings,
        stopping: bool,
    ) -> None:
        """Say this replica is alive (its row made the first time; ``started_at`` then)."""
        values = {
            "host": host,
            "pid": pid,
            "version": version,
            "last_seen_at": self._now(),
            "stopping": stopping,
            "pod_settings": _settings_text(settings),
        }
        result = await self._session.execute(
            update(ReplicaRow).where(ReplicaRow.replica_id == replica_id).values(**values)
        )
        if rowcount(result) == 0:  # only this replica writes its row: no race to insert it
            await self._session.execute(
                insert(ReplicaRow).values(replica_id=replica_id, started_at=self._now(), **values)
            )

    async def replicas(self, *, seen_within: float) -> list[Replica]:
        """The replicas heard from within the last ``seen_within`` seconds, by name."""
        cutoff = self._later(-seen_within)
        rows = await self._session.scalars(
            select(ReplicaRow)
            .where(ReplicaRow.last_seen_at >= cutoff)
            .order_by(ReplicaRow.replica_id)
        )
        return [
            Replica(
                replica_id=r.replica_id,
                host=r.host,
                pid=r.pid,
                version=r.version,
                started_at=r.started_at,
                last_seen_at=r.last_seen_at,
                stopping=r.stopping,
                pod_settings=_settings_of(r.pod_settings),
            )
            for r in rows
        ]

    async def forget_replicas(self, *, unseen_for: float) -> int:
        """Delete the rows of replicas not heard from for ``unseen_for`` seconds."""
        result = await self._session.execute(
            delete(ReplicaRow).where(ReplicaRow.last_seen_at < self._later(-unseen_for))
        )
        return rowcount(result)
