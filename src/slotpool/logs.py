"""Structured logs: readable lines on a terminal, JSON lines in production. One setup for the
control plane and the agent, driven by the same two settings (SLOTPOOL_LOG_LEVEL, _FORMAT)."""

from __future__ import annotations

import logging
import sys

import structlog


class _StandardError:
    """Standard error as it is when a line is written (not when logging was configured)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, level: str, log_format: str, to_stderr: bool = False) -> None:
    """Lines go to standard output, or with ``to_stderr`` to standard error (a command whose
    output is data)."""
    number = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(_StandardError() if to_stderr else None),  # type: ignore[arg-type]
    )
    logging.basicConfig(level=number, format="%(message)s")
    # Alembic tells every migration it runs (and "Will assume non-transactional DDL") at INFO:
    # news for whoever debugs (SLOTPOOL_LOG_LEVEL=debug), noise before the banner otherwise.
    quiet = number if number <= logging.DEBUG else max(number, logging.WARNING)
    logging.getLogger("alembic").setLevel(quiet)
