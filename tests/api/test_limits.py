"""Limits: the request size limit, caps on what a task holds, bounded validation work, and the
security headers; the size limit and the event loop against a real server process."""

from __future__ import annotations

import itertools
import json
import socket
import string
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slotpool.domain.bounds import MAX_ISSUES
from slotpool.settings import MIN_REQUEST_BYTES
from tests.api.conftest import Api
from tests.support.server import ServerProcess, server_process, server_settings

ADMIN = "limits-admin-token-0123456789abcdef"
UI_DIST = Path(__file__).resolve().parents[2] / "ui" / "dist"


def unknown_keys(count: int) -> bytes:
    """A JSON object of ``count`` short keys none of which is a config field: 100,000 of them
    fit in 1 MiB."""
    letters = string.ascii_uppercase  # config fields are lowercase
    names = ("".join(p) for p in itertools.product(letters, repeat=4))
    found = dict.fromkeys(itertools.islice(names, count), 0)
    return json.dumps(found, separators=(",", ":")).encode()


async def static_pool(api: Api) -> str:
    created = await api.client.post(
        "/api/v1/agent-pools", json={"name": "limits", "pool_type": "static"}
    )
    assert created.status_code == 201, created.text
    pool_id: str = created.json()["pool_id"]
    return pool_id


def details(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {d["field"]: d["message"] for d in response.json()["details"]}


# -- caps on a task ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "field", "limit"),
    [
        ({"env": {f"V{i}": "x" for i in range(257)}}, "env", "at most 256"),
        ({"env": {"BIG": "é" * 140_000}}, "env", "at most 262144"),
        ({"labels": {f"l{i}": "x" for i in range(65)}}, "labels", "at most 64"),
        ({"steps": [{"run": "x" * 131_073}]}, "steps.0.run", "at most 131072"),
        ({"steps": [{"command": ["y" * 70_000, "y" * 70_000]}]}, "steps.0.command", "131072"),
        ({"steps": [{"command": ["true"] * 1001}]}, "steps.0.command", "at most 1000"),
        ({"steps": [{"run": "z" * 100_000}] * 6}, "steps", "at most 524288"),
        ({"command": "x" * 131_073}, "command", "at most 131072"),
        ({"command": ["x"] * 1001}, "command", "at most 1000"),
    ],
)
async def test_a_task_above_a_cap_is_refused_with_its_field_and_the_limit(
    api: Api, task: dict[str, Any], field: str, limit: str
) -> None:
    pool_id = await static_pool(api)
    body = {"pool_id": pool_id, **({"command": "true"} | task if "steps" not in task else task)}
    found = details(await api.client.post("/api/v1/tasks", json=body))
    assert field in found, found
    assert limit in found[field], found
    listed = await api.client.get("/api/v1/tasks")
    assert listed.json()["total"] == 0  # nothing was stored


async def test_many_problems_are_reported_up_to_a_cap_and_the_rest_counted(api: Api) -> None:
    pool_id = await static_pool(api)
    env = {f"1BAD{i}": "x" for i in range(200)}  # not C identifiers
    response = await api.client.post(
        "/api/v1/tasks", json={"pool_id": pool_id, "command": "true", "env": env}
    )
    reported = response.json()["details"]
    assert response.status_code == 422
    assert len(reported) == MAX_ISSUES + 1
    assert reported[0]["field"] == "env.1BAD0"
    assert reported[-1] == {
        "field": "(more)",
        "message": f"and {200 - MAX_ISSUES} more problems, not listed (at most {MAX_ISSUES} are)",
    }


async def test_100000_unknown_config_keys_are_one_issue_and_cheap(api: Api) -> None:
    pool_id = await static_pool(api)
    body = unknown_keys(100_000)
    assert len(body) < MIN_REQUEST_BYTES
    started = time.perf_counter()
    response = await api.client.put(
        f"/api/v1/agent-pools/{pool_id}/k8s-config",
        content=body,
        headers={"content-type": "application/json"},
    )
    elapsed = time.perf_counter() - started
    found = details(response)
    assert list(found) == ["(body)"]
    assert found["(body)"].startswith("100000 unknown fields ('AAAA', 'AAAB'")
    assert "valid keys: image, image_pull_policy" in found["(body)"]
    assert elapsed < 2.0  # was 8-20 s: a hint computed for each key (a benchmark times it)


async def test_a_few_unknown_keys_still_get_a_hint_each(api: Api) -> None:
    pool_id = await static_pool(api)
    response = await api.client.put(
        f"/api/v1/agent-pools/{pool_id}/k8s-config", json={"imagee": "x", "cpu_limit": "1"}
    )
    reported = {d["field"]: d.get("hint") for d in response.json()["details"]}
    assert reported == {
        "imagee": "did you mean image?",
        "cpu_limit": "it belongs at resources.limits.cpu",
    }


# -- against a real server process --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("limits")
    settings = server_settings(work, admin=ADMIN, ui_dir=UI_DIST, local_runtime=False)
    with server_process(settings, work / "server.log") as running:
        yield running


def raw_answer(server: ServerProcess, head: str, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send ``head`` (and ``body``) on a plain socket and read until the server closes it: the
    status, the header block and the body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, content = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), headers.lower(), content


def raw_request(server: ServerProcess, head: str, body: bytes = b"") -> tuple[int, bytes]:
    status, _, content = raw_answer(server, head, body)
    return status, content


def test_a_declared_50_mb_body_gets_413_before_it_is_read_and_before_auth(
    server: ServerProcess,
) -> None:
    head = (
        "POST /api/v1/agent-pools HTTP/1.1\r\nHost: slotpool\r\n"
        "Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n"
    )
    # No token and not a byte of the body: the answer comes anyway, so nothing waited for it.
    status, body = raw_request(server, head)
    assert status == 413
    answer = json.loads(body)
    assert answer["error"].startswith("request body too large: at most 1048576 bytes")
    assert answer["details"][0]["field"] == "(body)"


def test_a_streamed_body_is_counted_and_cut_off_at_the_limit(server: ServerProcess) -> None:
    head = (
        "POST /api/v1/tasks HTTP/1.1\r\nHost: slotpool\r\n"
        f"Authorization: Bearer {ADMIN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # 17 chunks of 64 KiB: just past 1 MiB, never finished (no last chunk).
    status, headers, body = raw_answer(server, head, chunk * 17)
    assert status == 413, body
    assert json.loads(body)["error"].startswith("request body too large")
    # The rest of the body is never read, so the connection ends with the answer (else the
    # server may wait for a last chunk that never comes, and so does the client).
    assert b"connection: close" in headers.split(b"\r\n")


def test_healthz_answers_while_100000_key_bodies_are_refused(server: ServerProcess) -> None:
    with server.client() as api:
        pool_id = api.post("/api/v1/agent-pools", json={"name": "p", "pool_type": "static"})
        path = f"/api/v1/agent-pools/{pool_id.json()['pool_id']}/k8s-config"
    fits = unknown_keys(100_000)  # < 1 MiB: parsed and refused (422)
    too_big = json.dumps({f"key{i:06d}": 0 for i in range(100_000)}).encode()  # 1.6 MB: 413
    statuses: list[int] = []
    lock = threading.Lock()

    def send(body: bytes) -> None:
        with server.client() as api:
            headers = {"content-type": "application/json"}
            status = api.put(path, content=body, headers=headers).status_code
        with lock:
            statuses.append(status)

    senders = [threading.Thread(target=send, args=(b,)) for b in [fits, too_big] * 5]
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, timeout=30) as probe:
        probe.get("/healthz")  # connected
        for sender in senders:
            sender.start()
        while any(s.is_alive() for s in senders) or len(latencies) < 5:
            started = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    for sender in senders:
        sender.join()
    assert sorted(statuses) == [413] * 5 + [422] * 5
    # Generous: the bodies were refused in a blink; before, each blocked the loop 8-20 s.
    # The precise latency is measured by bench/api/limits.py.
    assert max(latencies) < 1.0, latencies


def test_every_answer_carries_the_security_headers(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        for path in ("/", "/pools/x", "/api/v1/agent-pools", "/healthz", "/docs"):
            headers = anonymous.get(path).headers
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "DENY", path
            assert headers["referrer-policy"] == "no-referrer", path
        for path in ("/", "/pools/x", "/api/v1/agent-pools"):
            policy = anonymous.get(path).headers["content-security-policy"]
            assert "script-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
        # The docs pages' own policies: this origin, and their inline code by hash or nonce.
        docs = anonymous.get("/docs").headers["content-security-policy"]
        assert "script-src 'self' 'sha256-" in docs
        redoc = anonymous.get("/redoc").headers["content-security-policy"]
        assert "script-src 'self' 'nonce-" in redoc
        assert "unsafe" not in docs + redoc
