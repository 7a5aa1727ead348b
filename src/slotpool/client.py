"""A small typed client of slotpool's REST API, used by the CLI (and handy in scripts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

LOG_NEXT = "X-Slotpool-Log-Next"
LOG_COMPLETE = "X-Slotpool-Log-Complete"
LOG_PAGE = 1000


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
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[Iterator[str]]:
        """A streamed answer (a followed log), as text pieces; no timeout between pieces."""
        try:
            with self._http.stream(method, path, timeout=None, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _body(response))
                yield response.iter_text()
        except httpx.TransportError as exc:
            raise ApiError(0, {"error": f"cannot reach {self._http.base_url}: {exc}"}) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()

    def log(self, task_id: str) -> Iterator[str]:
        """A task's whole log as stored now, one page after another."""
        after = 0
        while True:
            page = self.request(
                "GET", f"/api/v1/tasks/{task_id}/logs", params={"after": after, "limit": LOG_PAGE}
            )
            yield page.text
            if page.headers.get(LOG_COMPLETE) != "false":
                return
            after = int(page.headers[LOG_NEXT])

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
        """A pool by id or by name."""
        if ref.startswith("pool-"):
            found: dict[str, Any] = self.json("GET", f"/api/v1/agent-pools/{ref}")
            return found
        matches = self.list_pools(name=ref)
        if not matches:
            raise ApiError(404, {"error": f"no agent pool named {ref!r}"})
        return matches[0]
