"""Statements whose spelling differs between SQLite and PostgreSQL, written once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, String, Table, any_, bindparam, func, select
from sqlalchemy import column as named_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import BindParameter


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


def one_of(
    column: ColumnElement[str] | QueryableAttribute[str], values: BindParameter[Any], backend: str
) -> ColumnElement[bool]:
    """``column IN values``, the values bound as one parameter (``values_parameter``, given
    its value with ``values_bound``): ``= ANY(:values)`` on PostgreSQL, ``IN (SELECT value FROM
    json_each(:values))`` on SQLite. A page's 1,000 ids bound one by one, in each of a
    statement's four places, cost more than running it."""
    if backend == "postgresql":
        return column == any_(values)
    each = func.json_each(values).table_valued(named_column("value", String))
    return column.in_(select(each.c.value))


def values_parameter(name: str, backend: str) -> BindParameter[Any]:
    """The parameter ``name`` of a list of strings, for ``one_of``: an array on PostgreSQL, a
    JSON array on SQLite."""
    if backend == "postgresql":
        return bindparam(name, type_=postgresql.ARRAY(String))
    return bindparam(name, type_=String)


def values_bound(values: Sequence[str], backend: str) -> Any:
    """``values`` as ``values_parameter`` takes them."""
    return list(values) if backend == "postgresql" else json.dumps(list(values))
