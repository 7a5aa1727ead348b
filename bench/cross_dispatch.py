"""``python -m bench.cross_dispatch``: dispatch latency across server processes on PostgreSQL.

Two ``slotpool server`` processes (A and B) on one PostgreSQL database, a static pool, and one
agent of one slot started by hand against A (so it long-polls A). Tasks (``date +%s.%N``) are
submitted one at a time, alternately through B (the agent's claim on A is woken by B's commit
over LISTEN/NOTIFY: ``store/channel.py``) and through A (woken in process), in the same run, so
both see the same machine. Measured per task, as ``bench.dispatch`` does: from before the POST to
the step's clock read (client), and from the task's creation to its delivery to the agent
(server clocks). The report is printed, never written: the replica benchmark calls
``cross_dispatch`` and reports its numbers with its own.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.support.ports import free_port
from tests.support.server import ServerProcess, server_process, server_settings
from tests.support.static_agent import static_agent, static_pool

from bench.dispatch.measure import Sample, one_task
from bench.harness.databases import database
from bench.harness.stats import Stats
from slotpool.store.migrate import upgrade

READY_SECONDS = 60.0


@dataclass(frozen=True)
class Way:
    """One way a task takes: its samples and their percentiles."""

    name: str
    samples: list[Sample]

    def stats(self) -> dict[str, Stats]:
        columns = {
            "submit to step start (client)": [s.latency_ms for s in self.samples],
            "submit to delivery (server)": [s.server_ms for s in self.samples],
        }
        found = {}
        for column, values in columns.items():
            if (stats := Stats.maybe(column, [v for v in values if v is not None])) is not None:
                found[column] = stats
        return found

    def failures(self) -> int:
        return sum(1 for s in self.samples if s.status != "succeeded")


@dataclass(frozen=True)
class CrossDispatch:
    same: Way  # submitted through A, the agent's server
    cross: Way  # submitted through B

    def table(self) -> str:
        lines = [
            "| submitted through | measured | n | p50 ms | p90 ms | p99 ms | max ms | failed |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for path in (self.same, self.cross):
            for column, s in path.stats().items():
                lines.append(
                    f"| {path.name} | {column} | {s.n} | {s.p50:.1f} | {s.p90:.1f} | "
                    f"{s.p99:.1f} | {s.maximum:.1f} | {path.failures()} |"
                )
        return "\n".join(lines)


@contextlib.contextmanager
def _server(url: str, work: Path, name: str, token: str) -> Iterator[ServerProcess]:
    (work / name).mkdir()
    port = free_port()
    settings = server_settings(
        work / name, admin=token, port=port, database_url=url, local_runtime=False
    )
    with server_process(settings, work / f"{name}.log", port=port, grace=2) as server:
        yield server


def cross_dispatch(database_url: str, *, n: int = 200, warmups: int = 10) -> CrossDispatch:
    """``n`` measured tasks each way (after ``warmups`` each way) on the PostgreSQL database at
    ``database_url`` (migrated here if need be; two servers and an agent are started on it and
    stopped before this returns)."""
    upgrade(database_url)
    token = "bench-" + secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="slotpool-bench-cross-") as tmp,
        _server(database_url, Path(tmp), "a", token) as a,
        _server(database_url, Path(tmp), "b", token) as b,
        a.client() as on_a,
        b.client() as on_b,
    ):
        pool_id, pool_token = static_pool(on_a, "cross")
        with static_agent(a.url, pool_id, pool_token, name="agent-a", slots=1, work=Path(tmp)):
            _until_ready(on_a, pool_id)
            same: list[Sample] = []
            cross: list[Sample] = []
            for i in range(warmups + n):
                order = [(on_a, same), (on_b, cross)]
                for client, found in order if i % 2 else reversed(order):
                    sample = one_task(client, pool_id, i, warmup=i < warmups)
                    if not sample.warmup:
                        found.append(sample)
    return CrossDispatch(
        same=Way("A (the agent's server)", same), cross=Way("B (the other server)", cross)
    )


def _until_ready(client: httpx.Client, pool_id: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        pods = client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
        if any(p["state"] == "ready" for p in pods):
            return
        time.sleep(0.1)
    raise RuntimeError("the agent did not register")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cross_dispatch", description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="Measured tasks each way (200).")
    parser.add_argument("--warmups", type=int, default=10, help="Warm-up tasks each way (10).")
    parser.add_argument("--quick", action="store_true", help="5 tasks each way, 1 warm-up.")
    parser.add_argument(
        "--no-write", action="store_true", help="(the report is always printed, never written)"
    )
    args = parser.parse_args(argv)
    n, warmups = (5, 1) if args.quick else (args.n, args.warmups)
    print("starting PostgreSQL, two servers and an agent ...", file=sys.stderr, flush=True)
    with database("postgresql", migrate=True) as db:
        found = cross_dispatch(db.url, n=n, warmups=warmups)
        print(f"{db.durability()}\n")
    print(found.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
