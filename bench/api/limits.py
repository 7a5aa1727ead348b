"""``python -m bench.api.limits``: how long ``/healthz`` waits while a real server process
refuses bodies of 100,000 unknown config keys (five of 0.9 MB, parsed and refused with a 422,
and five of 1.6 MB, refused with a 413 before they are read), all sent at once; and how long one
such refusal takes. Prints the figures (recorded in bench/LIMITS.md)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tests.api.test_limits import unknown_keys
from tests.support.server import server_process, server_settings

ADMIN = "bench-admin-token-0123456789abcdef"
ROUNDS = 5


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="slotpool-bench-limits-"))
    settings = server_settings(work, admin=ADMIN, local_runtime=False)
    fits = unknown_keys(100_000)
    too_big = b"{" + b",".join(b'"key%06d":0' % i for i in range(100_000)) + b"}"
    with server_process(settings, work / "server.log") as server, server.client() as api:
        created = api.post("/api/v1/agent-pools", json={"name": "bench", "pool_type": "static"})
        path = f"/api/v1/agent-pools/{created.json()['pool_id']}/k8s-config"
        headers = {"content-type": "application/json"}
        alone = []
        for body in (fits, too_big) * ROUNDS:
            started = time.perf_counter()
            api.put(path, content=body, headers=headers)
            alone.append((len(body), time.perf_counter() - started))
        latencies: list[float] = []
        for _ in range(ROUNDS):
            senders = [
                threading.Thread(target=_send, args=(server.url, path, body))
                for body in [fits, too_big] * 5
            ]
            with httpx.Client(base_url=server.url) as probe:
                probe.get("/healthz")
                for sender in senders:
                    sender.start()
                while any(s.is_alive() for s in senders):
                    started = time.perf_counter()
                    probe.get("/healthz")
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.005)
            for sender in senders:
                sender.join()
    for size in (len(fits), len(too_big)):
        took = [t for n, t in alone if n == size]
        print(f"one body of {size} bytes refused: median {statistics.median(took) * 1000:.1f} ms")
    ordered = sorted(latencies)
    print(
        f"/healthz during 10 concurrent bodies x {ROUNDS}: {len(ordered)} probes, "
        f"p50 {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms"
    )
    return 0


def _send(url: str, path: str, body: bytes) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        client.put(path, content=body)


if __name__ == "__main__":
    sys.exit(main())
