"""Structured logs: readable lines on a terminal, JSON lines in production. One setup for the
control plane and the agent, driven by the same two settings (SLOTPOOL_LOG_LEVEL, _FORMAT)."""

from __future__ import annotations

import logging
from typing import TextIO

import structlog


def configure_logging(*, level: str, log_format: str, stream: TextIO | None = None) -> None:
    """``stream``: where the lines go (default standard output; a command whose output is data
    sends them to standard error)."""
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
        logger_factory=structlog.PrintLoggerFactory(stream),
    )
    logging.basicConfig(level=number, format="%(message)s")
