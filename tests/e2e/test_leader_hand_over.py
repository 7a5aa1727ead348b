"""Server processes on one database: one leads (runs the controller), SIGTERM hands over before
the lease would run out, a leader paused past its lease (SIGSTOP) acts no more when resumed, and
a second server on one SQLite database refuses to start, naming the first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess, server_process, server_settings, settings_env

ADMIN = "test-admin-token-0123456789abcdef"
LEASE, RENEW = 3.0, 0.5
WAIT = 60.0


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        time.sleep(0.1)


def cluster(server: ServerProcess) -> dict[str, Any]:
    with server.client() as client:
        answer = client.get("/api/v1/cluster")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def leader_of(server: ServerProcess) -> str | None:
    leader = cluster(server)["leader"]
    return None if leader is None else str(leader["replica_id"])


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    with pg_server.temporary_database() as url:
        yield url


def replica(tmp_path: Path, name: str, url: str, **values: object) -> tuple[Any, Path]:
    work = tmp_path / name
    work.mkdir()
    given: dict[str, Any] = {
        "database_url": url,
        "replica_id": name,
        "leader_lease_seconds": LEASE,
        "leader_renew_seconds": RENEW,
        "log_level": "info",
        **values,
    }
    settings = server_settings(work, admin=ADMIN, **given)
    return settings, work / "server.log"


@pytest.mark.postgres
def test_sigterm_hands_leadership_over_before_the_lease_runs_out(
    tmp_path: Path, pg_url: str
) -> None:
    settings_a, log_a = replica(tmp_path, "a", pg_url, leader_lease_seconds=20.0)
    settings_b, log_b = replica(tmp_path, "b", pg_url, leader_lease_seconds=20.0)
    with server_process(settings_a, log_a) as a, server_process(settings_b, log_b) as b:
        assert leader_of(b) == "a"  # the first one started leads; b follows, and serves
        before = cluster(b)["leader"]
        assert {r["replica_id"] for r in cluster(b)["replicas"]} == {"a", "b"}

        a.stop()  # SIGTERM: a hands over, then exits
        after = wait_for(lambda: cluster(b)["leader"], "b leads")
        assert after["replica_id"] == "b"
        assert after["term"] == before["term"] + 1
        # Elected well before a's lease (20 s, renewed every 0.5 s) would have run out.
        assert after["since"] < before["lease_expires_at"]
        log = log_a.read_text()
        gave_up = log.index(f"gave up leadership (term {before['term']}): stopping")
        assert gave_up < log.index("Shutting down"), "the port closed before the hand-over"
        assert "became leader (term" in log_b.read_text()


@pytest.mark.postgres
def test_a_leader_paused_past_its_lease_creates_nothing_when_resumed(
    tmp_path: Path, pg_url: str
) -> None:
    settings_a, log_a = replica(tmp_path, "a", pg_url)
    settings_b, log_b = replica(tmp_path, "b", pg_url)
    pods_a = settings_a.data_dir / "local-runtime" / "pods"
    with server_process(settings_a, log_a) as a, server_process(settings_b, log_b) as b:
        assert leader_of(b) == "a"
        term = cluster(b)["leader"]["term"]
        body = {
            "name": "local",
            "pool_type": "local",
            "k8s_config": {"min_replicas": 0, "max_replicas": 2, "slots_per_pod": 1},
        }
        with b.client() as client:
            created = client.post("/api/v1/agent-pools", json=body)
            assert created.status_code == 201, created.text
            pool_id = created.json()["pool_id"]

        os.kill(a.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: leader_of(b) == "b", "b leads once a's lease ran out")
            config = {"min_replicas": 1, "max_replicas": 2, "slots_per_pod": 1}
            with b.client() as client:
                saved = client.put(f"/api/v1/agent-pools/{pool_id}/k8s-config", json=config)
                assert saved.status_code == 200, saved.text
            # Leading, b keeps the pool's Pod: one local agent of its own.
            wait_for(
                lambda: list((settings_b.data_dir / "local-runtime" / "pods").glob("*.json")),
                "b starts the pool's agent",
            )
        finally:
            os.kill(a.pid, signal.SIGCONT)
        wait_for(
            lambda: f"lost leadership (term {term})" in log_a.read_text(),
            "a says it lost leadership",
        )
        time.sleep(2 * RENEW)  # rounds of a's resync and election after waking
        started = list(pods_a.glob("*.json")) if pods_a.exists() else []
        assert started == [], "a, resumed, started an agent"
        assert leader_of(a) == "b"


def test_a_second_server_on_one_sqlite_database_refuses_to_start(tmp_path: Path) -> None:
    settings, log = server_settings(tmp_path, admin=ADMIN), tmp_path / "server.log"
    with server_process(settings, log) as first:
        env = {**settings_env(settings), "SLOTPOOL_REPLICA_ID": "second"}
        second = subprocess.run(
            [sys.executable, "-m", "slotpool.cli", "server", "--port", str(first.port + 1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        said = " ".join(second.stderr.split())  # as printed, wrapped
        assert f"pid {first.pid}" in said
        assert first.url in said
        assert "listening" not in second.stdout + second.stderr  # no banner
        up = subprocess.run(
            [sys.executable, "-m", "slotpool.cli", "up", "--port", str(first.port + 1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert up.returncode == 1
        assert f"pid {first.pid}" in " ".join(up.stderr.split())
        assert "is up at" not in up.stdout + up.stderr
