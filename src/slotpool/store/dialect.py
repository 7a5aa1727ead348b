"""Statements whose spelling differs between SQLite and PostgreSQL, written once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def insert_ignoring_duplicates(
    table: Table, backend: str, values: dict[str, Any] | None = None
) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING: a resent log chunk must neither fail nor abort the
    transaction (PostgreSQL aborts a transaction on a unique violation). Without ``values``, the
    statement takes them at execution (one row or a list of rows)."""
    insert = postgresql.insert(table) if backend == "postgresql" else sqlite.insert(table)
    if values is not None:
        insert = insert.values(**values)
    return insert.on_conflict_do_nothing()


def rowcount(result: Any) -> int:
    """The rows an UPDATE or DELETE matched: how a conditional write says who won."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
