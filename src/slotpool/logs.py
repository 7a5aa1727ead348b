"""Structured logs: readable lines on a terminal, JSON lines in production. One setup for the
control plane and the agent, driven by the same two settings (SLOTPOOL_LOG_LEVEL, _FORMAT)."""

from __future__ import annotations

import logging

import structlog


def configure_logging(*, level: str, log_format: str) -> None:
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
    )
    logging.basicConfig(level=number, format="%(message)s")
    # Alembic tells every migration it runs (and "Will assume non-transactional DDL") at INFO:
    # news for whoever debugs (SLOTPOOL_LOG_LEVEL=debug), noise before the banner otherwise.
    quiet = number if number <= logging.DEBUG else max(number, logging.WARNING)
    logging.getLogger("alembic").setLevel(quiet)
