"""Migration 0010 on both databases: admin token names become unique (they are what audit fields
record), keeping the first holder of a name, and none keeps the configured token's name."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from slotpool.store.db import sync_url
from slotpool.store.migrate import downgrade, upgrade


def test_names_given_twice_are_made_unique(database_url: str) -> None:
    upgrade(database_url, "0008")
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as connection:
            for name, digest in [
                ("admin", "a" * 64),
                ("admin", "b" * 64),
                ("configured", "c" * 64),
            ]:
                connection.execute(
                    text(
                        "INSERT INTO admin_tokens (name, token_hash, created_at) "
                        "VALUES (:name, :digest, CURRENT_TIMESTAMP)"
                    ),
                    {"name": name, "digest": digest},
                )
        upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, name, created_by, revoked_at FROM admin_tokens ORDER BY id")
            ).all()
        first, second, third = (row[0] for row in rows)
        assert [tuple(row[1:]) for row in rows] == [
            ("admin", "slotpool", None),
            (f"admin-{second}", "slotpool", None),
            (f"configured-{third}", "slotpool", None),
        ]
        assert first < second < third
        downgrade(database_url, "0008")
        upgrade(database_url)
    finally:
        engine.dispose()
