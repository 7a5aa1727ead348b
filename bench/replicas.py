"""Several slotpool replicas on one PostgreSQL: how fast a lost leader is replaced, what a task
submitted on one replica and claimed on another costs, and what a second and third replica add
to the throughput. Every replica is ``slotpool server`` in its own process
(``tests/support/replicas.py``), on a throwaway PostgreSQL server (``tests/support/postgres.py``),
behind the round-robin proxy the tests use in place of a Kubernetes Service.

* ``failover``: three replicas, a static pool; the leader is SIGKILLed, and the time is taken
  from the kill (``time.time()`` just before it) to the new leader's election (``since`` in
  ``GET /api/v1/cluster``, the database's clock, same host) and to its first action (its
  ``first_pass_at``: its controller has passed over every pool once), and to when a client polling
  the surviving replicas every 10 ms first saw the new term. The killed replica is started
  again and the next kill waits for it, ``--kills`` times. The lease and renew interval are the
  tests' short ones (``--lease``; renew a fifth of it): failover is bounded by the lease.
* ``dispatch``: ``bench/cross_dispatch.py``: two servers A and B, a static pool with one agent
  (one slot) long-polling A; sequential tasks of ``date +%s.%N`` submitted alternately through A
  (same) and through B (cross: the wake-up has to cross processes); latency = the time ``date``
  printed minus ``time.time()`` just before the POST, and the server's part.
* ``throughput``: one, two and three replicas in turn, each on a new database, a static pool of
  ``AGENTS`` agents x ``SLOTS`` slots connected through the proxy, ``--tasks`` tasks of ``true``
  submitted through the proxy from ``CLIENTS`` threads; completions per second = tasks / (last
  ``finished_at`` - first submission), and the ratio to the one-replica run.

``python -m bench.replicas`` writes ``bench/REPLICAS.md``; ``--no-write`` prints it instead,
``--quick`` is a tiny run to see that it works.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from tests.support.postgres import PostgresServer
from tests.support.replicas import Replica, ReplicaSet
from tests.support.static_agent import static_agent, static_pool

from bench.cross_dispatch import CrossDispatch, cross_dispatch
from bench.harness import cli
from bench.harness.machine import Conditions, code_fingerprint, machine
from bench.harness.report import Report, started_line
from bench.harness.stats import quantile

ADMIN = "bench-replicas-admin-token-0123456789"
POOLS = "/api/v1/agent-pools"
TASKS = "/api/v1/tasks"
AGENTS = 4
SLOTS = 4
CLIENTS = 8
CLAIM_WAIT_SECONDS = 5
FINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "lost", "expired"})
DATE_COMMAND = "date +%s.%N"


def at(value: str) -> float:
    """An API timestamp as seconds since the epoch (naive ones are UTC)."""
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# -- replicas, a static pool and its agents ----------------------------------------------------


@contextlib.contextmanager
def replica_set(pg: PostgresServer, work: Path, count: int, lease: float) -> Iterator[ReplicaSet]:
    settings: dict[str, object] = {
        # A runtime, so that the leader runs the controller (and records its first pass); no
        # local pool is created.
        "local_runtime": True,
        "log_level": "warning",
        "access_log": "off",
        "claim_wait_seconds": CLAIM_WAIT_SECONDS,
    }
    with (
        pg.temporary_database() as url,
        ReplicaSet.of(
            work,
            url,
            count=count,
            admin=ADMIN,
            lease_seconds=lease,
            renew_seconds=lease / 5,
            settings=settings,
        ) as replicas,
    ):
        try:
            yield replicas
        except BaseException:
            print(f"the replicas' logs:\n{replicas.logs(6000)}", file=sys.stderr)
            raise


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)


def wait_ready(client: httpx.Client, pool_id: str, count: int, seconds: float = 60) -> None:
    """Until ``count`` agents of the pool have registered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pods = client.get(f"{POOLS}/{pool_id}/pods").json()["items"]
        if sum(p["state"] == "ready" for p in pods) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} agents were not ready in {seconds:.0f} s")


# -- failover ------------------------------------------------------------------------------------


@dataclass
class Failover:
    elected: list[float] = field(default_factory=list)  # kill -> the new term's ``since``, ms
    first_action: list[float] = field(default_factory=list)  # kill -> ``first_pass_at``, ms
    seen: list[float] = field(default_factory=list)  # kill -> a client saw the new term, ms
    leader_changes: int = 0


def new_leader(replicas: ReplicaSet, dead: Replica, term: int) -> tuple[dict[str, Any], float]:
    """The first view of a leader with a term above ``term`` read from the live replicas,
    polled every 10 ms, and when it was seen (``time.time()``)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for replica in replicas.replicas:
            if replica is dead or not replica.answers():
                continue
            view = replicas.leader_view(replica)
            if view is not None and view["term"] > term:
                return view, time.time()
        time.sleep(0.01)
    raise RuntimeError(f"no new leader after term {term} in 60 s:\n{replicas.logs()}")


def failover(pg: PostgresServer, work: Path, kills: int, lease: float) -> Failover:
    result = Failover()
    with replica_set(pg, work, 3, lease) as replicas, admin(replicas.url) as client:
        static_pool(client, "failover")
        for _ in range(kills):
            before = replicas.wait_leader(first_pass=True)
            dead = replicas.by_id(before["replica_id"])
            killed = time.time()
            replicas.kill(dead)
            view, seen = new_leader(replicas, dead, before["term"])
            result.seen.append((seen - killed) * 1000)
            result.elected.append((at(view["since"]) - killed) * 1000)
            done = replicas.wait_leader(after_term=before["term"], first_pass=True)
            result.first_action.append((at(done["first_pass_at"]) - killed) * 1000)
            result.leader_changes += done["term"] - before["term"]
            replicas.start_one(dead)
    return result


# -- dispatch across replicas: ``bench/cross_dispatch.py`` ----------------------------------------


# -- throughput ---------------------------------------------------------------------------------


@dataclass
class Throughput:
    replicas: int
    tasks: int
    seconds: float = 0.0
    submit_seconds: float = 0.0
    not_succeeded: int = 0
    errors: list[str] = field(default_factory=list)  # submissions that failed
    tracebacks: int = 0  # in the replicas' logs
    deadlocks: int = 0  # PostgreSQL's "deadlock detected", in the replicas' logs
    connections: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds else 0.0


def all_tasks(client: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = client.get(
            TASKS, params={"pool_id": pool_id, "limit": 500, "offset": len(found)}
        ).json()
        found += page["items"]
        if not page["items"] or len(found) >= page["total"]:
            return found


def throughput(pg: PostgresServer, work: Path, count: int, tasks: int, lease: float) -> Throughput:
    result = Throughput(count, tasks)
    with (
        replica_set(pg, work, count, lease) as replicas,
        admin(replicas.url) as client,
        contextlib.ExitStack() as agents,
    ):
        pool_id, token = static_pool(client, f"throughput-{count}")
        for index in range(AGENTS):
            name = f"agent-{count}-{index}"
            agents.enter_context(
                static_agent(replicas.url, pool_id, token, name=name, slots=SLOTS, work=work)
            )
        wait_ready(client, pool_id, AGENTS)
        replicas.wait_leader(first_pass=True)
        per_client = [tasks // CLIENTS + (i < tasks % CLIENTS) for i in range(CLIENTS)]
        errors: list[str] = []

        def submitter(share: int) -> None:
            with admin(replicas.url) as own:
                for _ in range(share):
                    try:
                        answer = own.post(TASKS, json={"pool_id": pool_id, "command": "true"})
                    except httpx.TransportError as exc:
                        errors.append(repr(exc))
                        continue
                    if answer.status_code != 201:
                        errors.append(f"{answer.status_code} {answer.text[:200]}")

        threads = [threading.Thread(target=submitter, args=(s,)) for s in per_client]
        started = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.submit_seconds = time.time() - started
        result.errors = errors  # reported: a submission that failed is a finding
        deadline = time.monotonic() + 300
        while True:
            found = all_tasks(client, pool_id)
            if len(found) >= tasks - len(errors) and all(t["status"] in FINAL for t in found):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the throughput tasks did not end in 300 s")
            time.sleep(0.5)
        result.tasks = len(found)
        result.seconds = max(at(t["finished_at"]) for t in found) - started
        result.not_succeeded = sum(t["status"] != "succeeded" for t in found)
        logs = "".join(r.log_text() for r in replicas.replicas)
        result.tracebacks = logs.count("Traceback (most recent call last)")
        result.deadlocks = logs.count("deadlock detected")
        by_port = {r.server.port: r.replica_id for r in replicas.replicas}
        result.connections = dict(
            sorted((by_port[port], n) for port, n in replicas.proxy.connections.items())
        )
    return result


# -- the report ------------------------------------------------------------------------------------


def ms_row(name: str, values: list[float]) -> list[str | int]:
    if not values:
        return [name, 0, "-", "-", "-", "-"]
    cells = [quantile(values, q) for q in (50, 90, 99)] + [max(values)]
    return [name, len(values), *(f"{v:,.0f}" for v in cells)]


@dataclass
class Run:
    args: argparse.Namespace
    started: datetime
    conditions: Conditions
    code: str
    seconds: float = 0.0
    pg_version: str = "?"
    failover: Failover | None = None
    dispatch: CrossDispatch | None = None
    throughput: list[Throughput] = field(default_factory=list)


def report(run: Run) -> str:
    args = run.args
    info = machine(("fastapi", "uvicorn", "sqlalchemy", "psycopg", "httpx"))
    info["PostgreSQL server"] = f"{run.pg_version} (`tests/support/postgres.py`: fsync=off)"
    out = Report("slotpool replicas benchmark").bullets(
        [
            started_line(run.started, run.seconds),
            f"Command: `{cli.command('replicas')}`",
            f"Code: {run.code}",
            "Setup: `slotpool server` processes (uvicorn, one worker each) on one PostgreSQL "
            f"database, lease {args.lease:g} s, renew {args.lease / 5:g} s, claim long poll "
            f"{CLAIM_WAIT_SECONDS} s, log level `warning`; the round-robin TCP proxy of the tests "
            "in front of them. Client, replicas, agents, proxy and database share the same CPUs.",
        ]
    )
    out.machine(info, run.conditions)
    header = ["measure", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    if run.failover is not None:
        f = run.failover
        out.heading("Failover: the leader SIGKILLed").table(
            header,
            [
                ms_row("kill -> new leader elected (`since`)", f.elected),
                ms_row("kill -> its first action (`first_pass_at`)", f.first_action),
                ms_row("kill -> a client sees the new term", f.seen),
            ],
        )
        out.para(
            f"{len(f.first_action)} kills, {f.leader_changes} elections. A follower takes over "
            f"once the dead leader's lease ({args.lease:g} s from its last renewal) has run out; "
            "its first action follows its first pass over the pools."
        )
    if run.dispatch is not None:
        d = run.dispatch
        out.heading("Dispatch: submitted on one replica, claimed on another")
        out.para(
            "`bench/cross_dispatch.py`: two servers A and B on one database, one agent with one "
            f"slot long-polling A, sequential `{DATE_COMMAND}` tasks submitted alternately "
            "through A (same) and through B (cross: the wake-up crosses processes over "
            "LISTEN/NOTIFY)."
        ).raw([d.table(), ""])
        client = "submit to step start (client)"
        same, cross = d.same.stats().get(client), d.cross.stats().get(client)
        if same is not None and cross is not None:
            out.para(f"Cross / same, p50 of submit to step start: {cross.p50 / same.p50:.2f}x.")
    if run.throughput:
        base = run.throughput[0].rate
        out.heading("Throughput: one, two and three replicas").table(
            ["replicas", "tasks", "submitting s", "all done s", "tasks/s", "vs one", "not ok",
             "submissions failed", "tracebacks (deadlocks) logged", "proxy connections"],
            [
                [t.replicas, t.tasks, f"{t.submit_seconds:.1f}", f"{t.seconds:.1f}",
                 f"{t.rate:.1f}", f"{t.rate / base:.2f}x" if base else "-", t.not_succeeded,
                 len(t.errors), f"{t.tracebacks} ({t.deadlocks})",
                 ", ".join(f"{k} {v}" for k, v in t.connections.items())]
                for t in run.throughput
            ],
        )  # fmt: skip
        failed = [(t.replicas, e) for t in run.throughput for e in t.errors]
        if failed:
            out.para(
                "Submissions that failed (the client does not retry here; each is a finding):"
            ).bullets(f"{n} replica(s): `{e[:200]}`" for n, e in failed[:10])
        out.para(
            f"A static pool of {AGENTS} agents x {SLOTS} slots connected through the proxy; "
            f"tasks of `true` from {CLIENTS} client threads through the proxy. Each replica "
            "count on a new database. On a machine with few CPUs the replicas share them: more "
            "replicas add availability, not CPU."
        )
    out.drift(run.conditions, "the runs")
    return out.text()


# -- entry point ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("replicas", __doc__ or "", "REPLICAS.md")
    parser.add_argument("--kills", type=int, default=20, help="leader kills (default 20)")
    parser.add_argument("--n", type=int, default=40, help="dispatch tasks per way (40)")
    parser.add_argument("--tasks", type=int, default=300, help="throughput tasks per run (300)")
    parser.add_argument("--lease", type=float, default=2.5, help="leader lease, s (2.5)")
    parser.add_argument(
        "--only",
        choices=("failover", "dispatch", "throughput"),
        action="append",
        help="run only these parts (repeatable)",
    )
    args = cli.quick(parser.parse_args(argv), kills=3, n=5, tasks=40)
    if args.kills < 2 or args.n < 2 or args.tasks < 1:
        parser.error("--kills and --n must be >= 2, --tasks >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.exit_on_sigterm()
    parts = set(args.only or ("failover", "dispatch", "throughput"))
    began = time.monotonic()
    run = Run(args, datetime.now(UTC), Conditions(), code_fingerprint())
    pg = PostgresServer.start()
    try:
        with pg.temporary_database() as url, psycopg.connect(url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            run.pg_version = str(row[0]) if row else "?"
        with tempfile.TemporaryDirectory(prefix="slotpool-bench-replicas-") as tmp:
            work = Path(tmp)
            if "failover" in parts:
                print(f"failover: {args.kills} leader kills", file=sys.stderr)
                run.failover = failover(pg, work / "failover", args.kills, args.lease)
            if "dispatch" in parts:
                print(f"dispatch: {args.n} tasks per way", file=sys.stderr)
                with pg.temporary_database() as url:
                    run.dispatch = cross_dispatch(url, n=args.n, warmups=5)
            if "throughput" in parts:
                for count in (1, 2, 3):
                    print(f"throughput: {count} replica(s), {args.tasks} tasks", file=sys.stderr)
                    run.throughput.append(
                        throughput(pg, work / f"throughput-{count}", count, args.tasks, args.lease)
                    )
    finally:
        pg.stop()
    run.conditions.done()
    run.seconds = time.monotonic() - began
    cli.write(args, report(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
