"""Replicas started together on an empty PostgreSQL database (a fresh install with two or more
replicas) each migrate it when they start: the migrations run once, one process after the other,
and every process starts, none failing on tables the other has just made."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slotpool.store.migrate import current_revision, head_revision
from tests.support.postgres import PostgresServer

MIGRATE = "from slotpool.store.migrate import upgrade; import sys; upgrade(sys.argv[1])"
PROCESSES = 3


@pytest.mark.postgres
def test_processes_migrating_one_empty_database_at_once_all_succeed(
    pg_server: PostgresServer,
) -> None:
    with pg_server.temporary_database() as url:
        running = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(PROCESSES)
        ]
        outputs = [process.communicate(timeout=300)[0].decode() for process in running]
        for process, output in zip(running, outputs, strict=True):
            assert process.returncode == 0, output
        assert current_revision(url) == head_revision()
