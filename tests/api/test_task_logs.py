"""A task's log comes back whole: streamed without parameters, or page by page with a cursor
(``after``, ``limit``; ``X-Slotpool-Log-Next`` and ``X-Slotpool-Log-Complete``)."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.support.logs import CHUNK, chunk_text, write_log, written

TASKS = "/api/v1/tasks"


async def submitted_task(api: Api) -> str:
    pool = await api.client.post(
        "/api/v1/agent-pools", json={"name": "logs", "pool_type": "static"}
    )
    task = await api.client.post(TASKS, json={"pool_id": pool.json()["pool_id"], "command": "true"})
    assert task.status_code == 201, task.text
    task_id: str = task.json()["id"]
    return task_id


async def test_a_68_mb_log_comes_back_whole(api: Api) -> None:
    task_id = await submitted_task(api)
    log = await write_log(api.database_url, task_id)
    assert log.size > 68 * 2**20 - 1  # 1,088 chunks: past the 1,000 a read used to stop at
    whole = await api.client.get(f"{TASKS}/{task_id}/logs", timeout=120)
    assert whole.status_code == 200
    assert written(whole.text) == log


async def test_pages_carry_a_cursor_and_say_when_they_are_complete(api: Api) -> None:
    task_id = await submitted_task(api)
    await write_log(api.database_url, task_id, chunks=25)
    pages, after = [], 0
    while True:
        page = await api.client.get(f"{TASKS}/{task_id}/logs", params={"after": after, "limit": 10})
        assert page.status_code == 200
        pages.append(page.text)
        after = int(page.headers["X-Slotpool-Log-Next"])
        if page.headers["X-Slotpool-Log-Complete"] == "true":
            break
    assert [len(p) // CHUNK for p in pages] == [10, 10, 5]
    assert "".join(pages) == "".join(chunk_text(i) for i in range(25))
    # From the last cursor: nothing more, complete, the same cursor.
    end = await api.client.get(f"{TASKS}/{task_id}/logs", params={"after": after})
    assert (end.text, end.headers["X-Slotpool-Log-Next"]) == ("", str(after))
    assert end.headers["X-Slotpool-Log-Complete"] == "true"


async def test_a_bad_cursor_or_limit_is_a_422_with_its_field(api: Api) -> None:
    task_id = await submitted_task(api)
    for params, field in (({"after": -1}, "query.after"), ({"limit": 1001}, "query.limit")):
        response = await api.client.get(f"{TASKS}/{task_id}/logs", params=params)
        assert response.status_code == 422
        assert response.json()["details"][0]["field"] == field
