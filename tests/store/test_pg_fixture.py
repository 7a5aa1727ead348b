"""The database fixtures themselves: every backend hands out a working, empty database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import PostgresServer

SQLITE_PREFIX = "sqlite:///"


def _round_trip_sqlite(url: str) -> None:
    assert url.startswith(SQLITE_PREFIX), url
    path = Path(url.removeprefix(SQLITE_PREFIX))
    assert path.is_absolute(), url
    assert not path.exists(), "the database must be new"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO probe (value) VALUES (?)", ("héllo",))
    conn.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM probe").fetchall() == [("héllo",)]
    conn.close()


def _public_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[object]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()
    return [row[0] for row in rows]


def _round_trip_postgres(url: str) -> None:
    assert url.startswith("postgresql://"), url
    with psycopg.connect(url) as conn:
        assert _public_tables(conn) == [], "the database must be empty"
        conn.execute("CREATE TABLE probe (id serial PRIMARY KEY, value text NOT NULL)")
        conn.execute("INSERT INTO probe (value) VALUES (%s)", ("héllo",))
    # A new connection sees the committed row.
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT value FROM probe").fetchall() == [("héllo",)]


def test_database_url_round_trips_a_value(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        _round_trip_sqlite(database_url)
    else:
        _round_trip_postgres(database_url)


def test_database_url_is_a_new_database_each_time(database_url: str) -> None:
    # Runs after the test above in the same session; a reused database would still hold `probe`.
    if database_url.startswith("sqlite"):
        _round_trip_sqlite(database_url)
    else:
        _round_trip_postgres(database_url)


@pytest.mark.postgres
def test_postgres_server_version(pg_server: PostgresServer) -> None:
    with psycopg.connect(pg_server.url("postgres")) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    version = str(row[0])
    assert version[:1].isdigit(), version


def _current_database(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def _database_names(pg_server: PostgresServer) -> set[str]:
    with psycopg.connect(pg_server.url("postgres")) as conn:
        return {str(row[0]) for row in conn.execute("SELECT datname FROM pg_database")}


@pytest.mark.postgres
def test_postgres_databases_are_distinct_and_dropped(pg_server: PostgresServer) -> None:
    with pg_server.temporary_database() as first, pg_server.temporary_database() as second:
        assert first != second
        first_name, second_name = _current_database(first), _current_database(second)
        assert first_name != second_name
        assert first_name.startswith("t_")
        assert second_name.startswith("t_")
        assert {first_name, second_name} <= _database_names(pg_server)
        with psycopg.connect(first) as conn:
            conn.execute("CREATE TABLE only_in_first (id int)")
        with psycopg.connect(second) as conn:
            assert _public_tables(conn) == []
        # A session left open must not keep its database from being dropped (WITH (FORCE)).
        lingering = psycopg.connect(second)
    try:
        assert not {first_name, second_name} & _database_names(pg_server)
    finally:
        lingering.close()
