"""Structured logs: readable lines on a terminal, JSON lines in production. One setup for the
control plane and the agent, driven by the same two settings (SLOTPOOL_LOG_LEVEL, _FORMAT).

Every line goes to the one stream, rendered by the same structlog processors: slotpool's own
written by structlog directly, the standard library's of everything else (uvicorn, Alembic,
SQLAlchemy, httpx, lightkube, asyncio, warnings) through the one handler installed here, with
structlog's ``ProcessorFormatter``. With JSON each line is one object with
at least ``timestamp``, ``level``, ``logger`` and ``event``; an exception is a field of it
(``exception``), never lines of its own.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog
from structlog.typing import Processor

# Libraries that tell every request or statement at INFO: news for whoever debugs
# (SLOTPOOL_LOG_LEVEL=debug), noise otherwise (an agent's heartbeats, each an httpx line).
CHATTY = ("alembic", "httpx", "httpcore", "lightkube")
# SQLAlchemy logs statements at INFO once its logger allows it: only when debugging (without
# their parameters: ``store.db`` hides them, they may hold a task's environment).
STATEMENTS = "sqlalchemy.engine"


class _Stream:
    """Standard output or error as it is when a line is written (not when logging was
    configured: tests and the CLI replace them)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def _stream(self) -> TextIO:
        stream: TextIO = getattr(sys, self._name)
        return stream

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


class _NamedWriter(structlog.WriteLogger):
    """A structlog logger writing each rendered line to the stream, with the name it was asked
    for (the ``logger`` field, as the standard library's loggers have)."""

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self.name = name


class _NamedWriters:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, *args: object) -> _NamedWriter:
        return _NamedWriter(self._stream, str(args[0]) if args else "")


_json = False


def json_chosen() -> bool:
    """Whether the last ``configure_logging`` chose JSON lines."""
    return _json


def configure_logging(*, level: str, log_format: str, to_stderr: bool = False) -> None:
    """Lines go to standard output, or with ``to_stderr`` to standard error (a command whose
    output is data)."""
    global _json
    _json = log_format == "json"
    number = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    stamped: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if _json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    stream = _Stream("stderr" if to_stderr else "stdout")
    # A plain traceback, in the JSON object or under the console line: never the console
    # renderer's own, which shows local variables (a token among them).
    rendered: list[Processor] = [structlog.processors.format_exc_info, renderer]
    # slotpool's own lines are rendered by structlog and written as they are: through the
    # standard library's logging (a record, a copy of it in the formatter, the caller's frame
    # looked up) an access line cost about 50 us, a tenth of a short request.
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *stamped, *rendered],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=_NamedWriters(cast(TextIO, stream)),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Lines of the standard library's loggers get what slotpool's own lines have.
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendered],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    logging.captureWarnings(True)  # Python's warnings as lines of the logger py.warnings
    debugging = number <= logging.DEBUG
    for name in CHATTY:
        logging.getLogger(name).setLevel(number if debugging else max(number, logging.WARNING))
    logging.getLogger(STATEMENTS).setLevel(logging.INFO if debugging else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers, where something installed them, would write plain text.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


def announce(text: str, *, level: int = logging.INFO, **fields: object) -> None:
    """What a person starting slotpool must read (where it listens, a warning about its
    set-up): as it is on standard error on a terminal, a line of the logger ``slotpool`` with
    JSON (nothing else may appear between the JSON lines)."""
    if _json:
        structlog.get_logger("slotpool").log(level, text, **fields)
    else:
        print(text, file=sys.stderr, flush=True)
