"""A small typed client of slotpool's REST API, used by the CLI (and handy in scripts)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from slotpool.domain.pools import POOL_ID_PATTERN
from slotpool.domain.tasks import FINAL

LOG_NEXT = "X-Slotpool-Log-Next"
LOG_COMPLETE = "X-Slotpool-Log-Complete"
LOG_PAGE = 1000
# How long a followed log waits for a server to answer again (a restart, a replica's hand-over),
# and how often it tries; the answers that mean "try again" (0: no connection at all).
FOLLOW_PATIENCE = 120.0
FOLLOW_RETRY_SECONDS = 0.5
RETRIED = frozenset({0, 502, 503, 504})
POOL_ID = re.compile(POOL_ID_PATTERN)


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("error") if isinstance(body, dict) else str(body)
        super().__init__(f"HTTP {status}: {message}")

    @property
    def details(self) -> list[dict[str, str]]:
        details = self.body.get("details") if isinstance(self.body, dict) else None
        return list(details or [])


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"error": response.text or response.reason_phrase}


class Client:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, {"error": f"cannot reach {self._http.base_url}: {exc}"}) from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _body(response))
        return response

    @contextmanager
    def stream_lines(self, method: str, path: str, **kwargs: Any) -> Iterator[Iterator[str]]:
        """A streamed answer line by line (a followed log); no timeout between lines."""
        try:
            with self._http.stream(method, path, timeout=None, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _body(response))
                yield response.iter_lines()
        except httpx.TransportError as exc:
            raise ApiError(0, {"error": f"cannot reach {self._http.base_url}: {exc}"}) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()

    def log(self, task_id: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
        """A task's whole log as stored now (after the chunk id ``after``), chunk by chunk
        (``{"type": "log", stream, data, step_index, seq, at, id}``), one page after another."""
        while True:
            page = self.request(
                "GET",
                f"/api/v1/tasks/{task_id}/logs",
                params={"after": after, "limit": LOG_PAGE, "format": "ndjson"},
            )
            yield from (json.loads(line) for line in page.text.splitlines())
            if page.headers.get(LOG_COMPLETE) != "false":
                return
            after = int(page.headers[LOG_NEXT])

    @contextmanager
    def follow(
        self, task_id: str, *, patience: float = FOLLOW_PATIENCE
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """A task's log as it grows, until the task has ended: its chunks, and
        ``{"type": "task", status, reason, step_index}`` first and whenever that changes.

        A stream that ends before the task has (the server stopped: a restart, a replica handing
        over) or breaks is resumed after the last chunk read, on whichever server answers;
        nothing is read twice. The server may be unreachable for ``patience`` seconds at most
        between two answers."""
        yield self._followed(task_id, patience)

    def _followed(self, task_id: str, patience: float) -> Iterator[dict[str, Any]]:
        after = 0
        ended = False  # a task record said it has ended
        gone_since: float | None = None
        while True:
            params: dict[str, Any] = {"follow": "true", "format": "ndjson", "after": after}
            try:
                with self.stream_lines(
                    "GET", f"/api/v1/tasks/{task_id}/logs", params=params
                ) as lines:
                    for line in lines:
                        if not line:
                            continue
                        gone_since = None
                        record: dict[str, Any] = json.loads(line)
                        if record["type"] == "log":
                            after = max(after, int(record["id"]))
                        else:
                            ended = record["status"] in FINAL
                        yield record
                if ended:  # and whatever a stream cut short after the end did not bring
                    yield from self.log(task_id, after=after)
                    return
            except ApiError as exc:
                if exc.status not in RETRIED:
                    raise
                now = time.monotonic()
                gone_since = now if gone_since is None else gone_since
                if now - gone_since > patience:
                    raise
            time.sleep(FOLLOW_RETRY_SECONDS)

    def list_pools(self, *, name: str | None = None) -> list[dict[str, Any]]:
        pools: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"limit": 1000, "offset": len(pools)}
            if name is not None:
                params["name"] = name
            page = self.json("GET", "/api/v1/agent-pools", params=params)
            pools.extend(page["items"])
            if len(pools) >= page["total"] or not page["items"]:
                return pools

    def find_pool(self, ref: str) -> dict[str, Any]:
        """A pool by id or by name: a name may look like an id (``pool-`` and 16 characters),
        so an id that is no pool's is looked up as a name too."""
        if POOL_ID.fullmatch(ref):
            try:
                found: dict[str, Any] = self.json("GET", f"/api/v1/agent-pools/{ref}")
                return found
            except ApiError as exc:
                if exc.status != 404:
                    raise
        matches = self.list_pools(name=ref)
        if not matches:
            raise ApiError(404, {"error": f"no agent pool named {ref!r}"})
        return matches[0]
