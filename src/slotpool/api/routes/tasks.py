"""/api/v1/tasks: submit, list, read, logs (fetch or follow), approve, cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.schemas import TaskList, TaskOut
from slotpool.domain.pools import POOL_ID_PATTERN
from slotpool.domain.tasks import TaskStatus, TaskSubmit

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])
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
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> TaskList:
    tasks, total = await services.tasks.page(
        pool_id=pool_id, status=status, limit=limit, offset=offset
    )
    return TaskList(items=[TaskOut.of(t) for t in tasks], total=total, limit=limit, offset=offset)


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: TaskId, services: ServicesDep, _: Admin) -> TaskOut:
    return TaskOut.of(await services.tasks.get(task_id))


@router.get(
    "/{task_id}/logs",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def logs(
    task_id: TaskId,
    services: ServicesDep,
    _: Admin,
    follow: Annotated[bool, Query(description="Stream until the task has ended.")] = False,
) -> Response:
    if not follow:
        _task, chunks = await services.tasks.logs(task_id, after=0)
        return PlainTextResponse("".join(chunk[3] for chunk in chunks))
    await services.tasks.get(task_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        async for data in services.tasks.follow(task_id):
            yield data

    return StreamingResponse(stream(), media_type="text/plain")


@router.post("/{task_id}/approve", response_model=TaskOut)
async def approve(task_id: TaskId, services: ServicesDep, actor: Admin) -> TaskOut:
    return TaskOut.of(await services.tasks.approve(task_id, by=actor))


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel(task_id: TaskId, services: ServicesDep, actor: Admin) -> TaskOut:
    return TaskOut.of(await services.tasks.cancel(task_id, by=actor))
