"""Shared pytest fixtures for the slotpool test suite, and the check that it leaves nothing running.

Kubernetes: ``k8s`` (session), a real control plane (see ``tests/support/kube.py``); skipped when
its binaries are not built, or failing when ``SLOTPOOL_TEST_K8S_REQUIRED=1`` (``scripts/test``).

Databases:

* ``pg_server`` (session): a throwaway PostgreSQL server (see ``tests/support/postgres.py``).
  When the server binaries are missing the tests using it are skipped, or fail when
  ``SLOTPOOL_TEST_PG_REQUIRED=1`` (``scripts/test`` sets it, so CI never skips them silently).
* ``database_url`` (function): a fresh, empty database URL, once per backend: ``sqlite`` and
  ``postgresql`` (the latter marked ``postgres``; deselect it with ``-m "not postgres"``).

Nothing outlives the run: the pytest process adopts every orphaned descendant (a child
subreaper), and once the session is over every process the suite started and did not end is
reported with its command line, killed, and the run fails (``tests/support/leaks.py``). A test
still running after 10 minutes is a hang: every thread's and asyncio task's stack is written out
and the run is interrupted (``tests/support/watchdog.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import K8sTestEnv, K8sTestEnvUnavailableError, bin_dir
from tests.support.postgres import PostgresServer, PostgresUnavailableError

PG_REQUIRED_ENV = "SLOTPOOL_TEST_PG_REQUIRED"
K8S_REQUIRED_ENV = "SLOTPOOL_TEST_K8S_REQUIRED"
# nothing the run starts outlives it; a test that hangs says where, and ends the run
pytest_plugins = ["tests.support.leaks", "tests.support.watchdog"]


# -- a real Kubernetes control plane -------------------------------------------------------------


@pytest.fixture(scope="session")
def k8s() -> Iterator[K8sTestEnv]:
    """etcd, kube-apiserver, scheduler, controller-manager and kwok (three fake 4-CPU Nodes),
    started once for the session from binaries built by ``scripts/k8s-testenv build``."""
    try:
        binaries = bin_dir()
    except K8sTestEnvUnavailableError as exc:
        if os.environ.get(K8S_REQUIRED_ENV) == "1":
            pytest.fail(f"the Kubernetes test binaries are required ({K8S_REQUIRED_ENV}=1): {exc}")
        pytest.skip(f"Kubernetes test binaries not built: {exc}")
    env = K8sTestEnv.start(Path(tempfile.mkdtemp(prefix="slotpool-k8s-")), binaries)
    try:
        env.wait_for_nodes_ready()
        yield env
    finally:
        env.stop()


# -- databases ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except PostgresUnavailableError as exc:
        if os.environ.get(PG_REQUIRED_ENV) == "1":
            pytest.fail(f"PostgreSQL is required ({PG_REQUIRED_ENV}=1) but unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a new, empty database; PostgreSQL databases are dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/slotpool.db"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    with server.temporary_database() as url:
        yield url
