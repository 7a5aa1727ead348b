"""The CLI's tests run a live server in this process: its log lines go to the real stderr, not
into the output of the command under test (``CliRunner`` swaps ``sys.stdout`` for it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def server_logs_apart() -> Iterator[None]:
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.__stderr__))
    try:
        yield
    finally:
        structlog.configure(**saved)
