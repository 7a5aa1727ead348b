"""Alembic environment: batch mode so SQLite can alter tables, one chain for both databases."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

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
        context.run_migrations()
engine.dispose()
