"""Alembic environment: batch mode so SQLite can alter tables, one chain for both databases.

On PostgreSQL the migrations run under a transaction-level advisory lock: replicas started together
on one database (a fresh install with several replicas, a rolling upgrade that surges) each migrate
it when they start, and without the lock two of them would create the same tables at once and
all but one fail. With it they take turns; the one that comes second reads the version the first
committed and has nothing left to do. (SQLite has one server per database.)"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from slotpool.store.advisory import lock_key
from slotpool.store.db import apply_sqlite_pragmas, backend
from slotpool.store.models import Base

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None, "slotpool.store.migrate sets sqlalchemy.url"
engine = create_engine(url, poolclass=pool.NullPool)
is_sqlite = backend(url) == "sqlite"
if is_sqlite:
    from sqlalchemy import event

    event.listen(engine, "connect", apply_sqlite_pragmas)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=is_sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        if not is_sqlite:  # released with the transaction, so also when a migration fails
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("migrations")}
            )
        context.run_migrations()
engine.dispose()
