"""Several slotpool server processes on one PostgreSQL database behind one round-robin proxy, as
a Deployment of replicas behind a Service: the harness of the multi-replica tests, the chaos
run's replica variant and ``bench/replicas.py``.

Each replica is a ``ServerProcess`` with its own port, data directory, log and replica id
(``replica-0``, ``replica-1``, ...), short leader-lease settings (a lost leader is replaced
within seconds) and, unless told otherwise, the proxy's URL as its public URL: the URL its
Pods' agents are given, the same on every replica, as in a Deployment. The helpers kill a
replica (SIGKILL, a crash), freeze and thaw it (SIGSTOP / SIGCONT: a process paused past its
lease, as a long GC pause or a stalled node would), restart it (SIGTERM, then start again on
the same port) and restart them all one at a time; ``cluster()`` and ``leader()`` read
``GET /api/v1/cluster`` from a replica that answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from slotpool.settings import Settings
from tests.support.ports import free_port
from tests.support.proxy import RoundRobinProxy
from tests.support.server import ServerProcess, server_settings

LEASE_SECONDS = 2.5
RENEW_SECONDS = 0.5
CLUSTER = "/api/v1/cluster"


@dataclass
class Replica:
    """One server process of the set; ``frozen`` while it is SIGSTOPped."""

    replica_id: str
    server: ServerProcess
    frozen: bool = False
    kills: int = 0
    restarts: int = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def log(self) -> Path:
        return self.server.log

    def running(self) -> bool:
        process = self.server.process
        return process is not None and process.poll() is None

    def answers(self) -> bool:
        """Running and not frozen: its API can be asked."""
        return self.running() and not self.frozen

    def log_text(self) -> str:
        try:
            return self.server.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class ReplicaSet:
    """``replicas`` on ``database_url`` behind ``proxy`` (see the module); ``admin`` is the
    admin token of every replica."""

    replicas: list[Replica]
    proxy: RoundRobinProxy
    admin: str
    kills: int = 0
    restarts: int = 0
    history: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, what)

    @classmethod
    def of(
        cls,
        work: Path,
        database_url: str,
        *,
        count: int = 3,
        admin: str,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        public_urls: Mapping[int, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        settings: Mapping[str, object] | None = None,
    ) -> Self:
        """Not started (``start`` starts them, one after the other: the first migrates the
        database). ``public_urls``: the public URL of replica ``i`` instead of the proxy's;
        ``settings``: settings of every replica (``kubeconfig``, ``pod_sync_seconds``...)."""
        ports = [free_port() for _ in range(count)]
        proxy = RoundRobinProxy(ports)
        replicas = []
        for index, port in enumerate(ports):
            replica_id = f"replica-{index}"
            home = work / replica_id
            home.mkdir(parents=True, exist_ok=True)
            public = (public_urls or {}).get(index, proxy.url).format(proxy_port=proxy.port)
            own = {"database_url": database_url, "local_runtime": False, "log_level": "info"}
            base = server_settings(home, admin=admin).model_dump()
            chosen = {**base, **own, **(settings or {}), "public_url": public}
            env = {
                "SLOTPOOL_REPLICA_ID": replica_id,
                "SLOTPOOL_LEADER_LEASE_SECONDS": str(lease_seconds),
                "SLOTPOOL_LEADER_RENEW_SECONDS": str(renew_seconds),
                **(extra_env or {}),
            }
            log = work / f"{replica_id}.log"
            server = ServerProcess.of(
                Settings.model_validate(chosen), log, port=port, extra_env=env
            )
            replicas.append(Replica(replica_id, server))
        return cls(replicas, proxy, admin)

    # -- starting and ending -----------------------------------------------------------------

    def start(self) -> Self:
        self.proxy.__enter__()
        for replica in self.replicas:
            replica.server.start_again()
        return self

    def close(self) -> None:
        """Every replica ended (thawed first, so its SIGTERM is heard), then the proxy."""
        for replica in self.replicas:
            self.thaw(replica)
            with contextlib.suppress(Exception):
                replica.server.stop(grace=5)
        self.proxy.__exit__(None, None, None)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The one URL of them all (the proxy's)."""
        return self.proxy.url

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An admin client through the proxy."""
        headers = {"Authorization": f"Bearer {self.admin}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def client_of(self, replica: Replica, timeout: float = 30.0) -> httpx.Client:
        """An admin client of that one replica."""
        return replica.server.client(self.admin, timeout=timeout)

    # -- who leads ------------------------------------------------------------------------------

    def by_id(self, replica_id: str) -> Replica:
        (found,) = [r for r in self.replicas if r.replica_id == replica_id]
        return found

    def cluster(self, via: Replica | None = None) -> dict[str, Any] | None:
        """``GET /api/v1/cluster`` from ``via``, or the first replica that answers; None when
        none does."""
        for replica in [via] if via is not None else self.replicas:
            if not replica.answers():
                continue
            with contextlib.suppress(httpx.TransportError, ValueError):
                answer = httpx.get(
                    replica.url + CLUSTER,
                    headers={"Authorization": f"Bearer {self.admin}"},
                    timeout=2,
                )
                if answer.status_code == 200:
                    found: dict[str, Any] = answer.json()
                    return found
        return None

    def leader_view(self, via: Replica | None = None) -> dict[str, Any] | None:
        """The ``leader`` object of ``/api/v1/cluster`` (None while nobody leads)."""
        seen = self.cluster(via)
        leader: dict[str, Any] | None = None if seen is None else seen.get("leader")
        return leader

    def leader(self) -> Replica | None:
        """The replica that leads now, as the live replicas report it (None while nobody does,
        or when the one named is not running: its lease has not run out yet)."""
        view = self.leader_view()
        if view is None:
            return None
        replica = self.by_id(view["replica_id"])
        return replica if replica.answers() else None

    def wait_leader(
        self, *, after_term: int = 0, seconds: float = 60.0, first_pass: bool = False
    ) -> dict[str, Any]:
        """The leader's view once one leads with a term above ``after_term`` (and, with
        ``first_pass``, once its controller finished its first pass)."""
        deadline = time.monotonic() + seconds
        while True:
            view = self.leader_view()
            if (
                view is not None
                and view["term"] > after_term
                and self.by_id(view["replica_id"]).answers()
                and (not first_pass or view.get("first_pass_at") is not None)
            ):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no leader after term {after_term} within {seconds:.0f} s; "
                    f"last seen {view}; cluster {self.cluster()}"
                )
            time.sleep(0.05)

    def followers(self) -> list[Replica]:
        leader = self.leader()
        return [r for r in self.replicas if r is not leader and r.answers()]

    # -- faults ---------------------------------------------------------------------------------

    def _note(self, what: str) -> None:
        self.history.append((time.monotonic(), what))

    def kill(self, replica: Replica) -> None:
        """SIGKILL, as a crash (it stays down until ``start``)."""
        self.thaw(replica)
        replica.server.kill()
        replica.kills += 1
        self.kills += 1
        self._note(f"killed {replica.replica_id}")

    def start_one(self, replica: Replica) -> None:
        """Start a replica that is down again, on its port and data (ready once it answers)."""
        replica.server.start_again()
        self._note(f"started {replica.replica_id}")

    def freeze(self, replica: Replica) -> None:
        """SIGSTOP: it holds its connections and answers nothing until ``thaw``."""
        if replica.running() and not replica.frozen:
            os.kill(replica.server.pid, signal.SIGSTOP)
            replica.frozen = True
            self._note(f"froze {replica.replica_id}")

    def thaw(self, replica: Replica) -> None:
        if replica.frozen and replica.running():
            os.kill(replica.server.pid, signal.SIGCONT)
            self._note(f"thawed {replica.replica_id}")
        replica.frozen = False

    def restart(self, replica: Replica, *, grace: float = 30.0) -> None:
        """SIGTERM (it hands over and drains), then started again on the same port."""
        self.thaw(replica)
        replica.server.stop(grace=grace)
        replica.server.start_again()
        replica.restarts += 1
        self.restarts += 1
        self._note(f"restarted {replica.replica_id}")

    def rolling_restart(
        self, *, grace: float = 30.0, pause: float = 1.0
    ) -> Iterator[tuple[Replica, bool]]:
        """Restart each replica in turn, the next once the one before is ready again and
        ``pause`` later (as a Deployment's rolling update does); yields each once restarted,
        with whether it led just before its restart."""
        for replica in self.replicas:
            led = self.leader() is replica
            self.restart(replica, grace=grace)
            time.sleep(pause)
            yield replica, led

    def logs(self, chars: int = 3000) -> str:
        """The end of every replica's log, for a failing test's message."""
        return "\n\n".join(
            f"--- {r.replica_id} ---\n{r.server.tail(chars, skip='HTTP Request: ')}"
            for r in self.replicas
        )
