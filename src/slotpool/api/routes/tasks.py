"""/api/v1/tasks: submit, list, read, logs (fetch or follow), approve, cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.schemas import TaskList, TaskOut
from slotpool.domain.pools import POOL_ID_PATTERN
from slotpool.domain.tasks import TaskStatus, TaskSubmit
from slotpool.domain.text import Text
from slotpool.services.tasks import LOG_PAGE, LogPage

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])
TEXT = "text/plain; charset=utf-8"
TaskId = Annotated[str, Path(pattern=r"^task-[a-z0-9]{16}$")]


@router.post("", response_model=TaskOut, status_code=status.HTTP_201_CREATED)
async def submit(
    body: TaskSubmit, services: ServicesDep, actor: Admin, response: Response
) -> TaskOut:
    task = await services.tasks.submit(body, by=actor)
    response.headers["Location"] = f"{router.prefix}/{task.id}"
    return TaskOut.of(task)


@router.get("", response_model=TaskList)
async def list_tasks(
    services: ServicesDep,
    _: Admin,
    pool_id: Annotated[str | None, Query(pattern=POOL_ID_PATTERN)] = None,
    status: TaskStatus | None = None,
    created_by: Annotated[
        Text | None,
        Query(min_length=1, max_length=200, description="Only the tasks this actor submitted."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> TaskList:
    tasks, total = await services.tasks.page(
        pool_id=pool_id, status=status, created_by=created_by, limit=limit, offset=offset
    )
    return TaskList(items=[TaskOut.of(t) for t in tasks], total=total, limit=limit, offset=offset)


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: TaskId, services: ServicesDep, _: Admin) -> TaskOut:
    return TaskOut.of(await services.tasks.get(task_id))


LOG_NEXT = "X-Slotpool-Log-Next"
LOG_COMPLETE = "X-Slotpool-Log-Complete"
PAGE_HEADERS = {
    LOG_NEXT: {
        "description": "The cursor after this page: pass it as `after` to read on.",
        "schema": {"type": "integer"},
    },
    LOG_COMPLETE: {
        "description": "`true`: nothing was stored after this page when it was read.",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
}


@router.get(
    "/{task_id}/logs",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Without `after` and `limit`: the whole log, streamed. With either: "
            "one page, its cursor and whether it is the last in the headers.",
            "headers": PAGE_HEADERS,
        }
    },
)
async def logs(
    task_id: TaskId,
    services: ServicesDep,
    _: Admin,
    follow: Annotated[bool, Query(description="Stream until the task has ended.")] = False,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description=f"A page after this cursor (the {LOG_NEXT} header)."),
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=LOG_PAGE, description="A page of at most this many chunks.")
    ] = None,
    format: Annotated[
        LogFormat,
        Query(
            description="text: the output as it is. ndjson: one JSON object a line, "
            '`{"type": "log", id, step_index, seq, stream: stdout|stderr, data, at}`; when '
            'following, also `{"type": "task", status, reason, step_index}` first and '
            "whenever one of these changes (what a queued task waits for)."
        ),
    ] = "text",
) -> Response:
    render = as_ndjson if format == "ndjson" else as_text
    media = NDJSON if format == "ndjson" else TEXT
    if not follow and (after is not None or limit is not None):
        page = await services.tasks.log_page(task_id, after=after or 0, limit=limit or LOG_PAGE)
        headers = {LOG_NEXT: str(page.next), LOG_COMPLETE: str(page.complete).lower()}
        return Response(render(page, False), media_type=media, headers=headers)
    await services.tasks.get(task_id)  # 404 before the stream starts
    if follow:
        pages = services.tasks.follow(task_id, after=after or 0)
    else:
        pages = services.tasks.whole_log(task_id)
    return StreamingResponse(rendered(pages, render, follow=follow), media_type=media)


LogFormat = Literal["text", "ndjson"]
NDJSON = "application/x-ndjson"
Render = Callable[[LogPage, bool], str]  # (page, whether to tell the task's state first)


def as_text(page: LogPage, _: bool) -> str:
    return page.text


def as_ndjson(page: LogPage, tell_task: bool) -> str:
    task = page.task
    lines: list[dict[str, object]] = []
    if tell_task:
        state = {"status": task.status.value, "reason": task.reason}
        lines.append({"type": "task", **state, "step_index": task.current_step})
    lines.extend(
        {
            "type": "log",
            "id": chunk.id,
            "step_index": chunk.step_index,
            "seq": chunk.seq,
            "stream": chunk.stream.value,
            "data": chunk.data,
            "at": chunk.at.isoformat(),
        }
        for chunk in page.chunks
    )
    return "".join(json.dumps(line) + "\n" for line in lines)


async def rendered(
    pages: AsyncIterator[LogPage], render: Render, *, follow: bool
) -> AsyncIterator[str]:
    """The pages as text; following, the task's state is told first and whenever it changes."""
    told: tuple[str, str, int] | None = None
    async for page in pages:
        state = (page.task.status.value, page.task.reason, page.task.current_step)
        text = render(page, follow and state != told)
        told = state
        if text:
            yield text


@router.post("/{task_id}/approve", response_model=TaskOut)
async def approve(task_id: TaskId, services: ServicesDep, actor: Admin) -> TaskOut:
    return TaskOut.of(await services.tasks.approve(task_id, by=actor))


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel(task_id: TaskId, services: ServicesDep, actor: Admin) -> TaskOut:
    return TaskOut.of(await services.tasks.cancel(task_id, by=actor))
