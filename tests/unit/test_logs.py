"""``logs.configure_logging``: one stream and one format for slotpool's lines and every
library's, an exception inside its line, and no local variable of a failing frame in any
format."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest
import structlog

from slotpool.logs import configure_logging


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def fail(secret: str) -> None:
    raise RuntimeError("failed")


SECRET = "local-secret-value"


def log_everything() -> None:
    token = SECRET.upper()  # a local variable of the failing frames
    try:
        fail(token)
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("from the standard library")
        structlog.get_logger("slotpool.test").exception("from structlog", pool="p")
    warnings.warn("a warning", UserWarning, stacklevel=1)
    logging.getLogger("httpx").info('HTTP Request: POST /heartbeat "HTTP/1.1 200 OK"')
    logging.getLogger("alembic.runtime.migration").info("Running upgrade")


@pytest.fixture(autouse=True)
def warnings_not_yet_captured() -> Iterator[None]:
    """pytest records each test's warnings; ``configure_logging`` captures them into logging
    only if no earlier test (in this process) already did, so each test starts uncaptured."""
    logging.captureWarnings(False)
    yield
    logging.captureWarnings(False)


def test_json_lines_from_every_logger(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="info", log_format="json")
    log_everything()
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("uvicorn.error", "error"),
        ("slotpool.test", "error"),
        ("py.warnings", "warning"),
    ]  # httpx and Alembic speak at debug level only
    assert all({"timestamp", "event"} <= line.keys() for line in lines)
    assert all("RuntimeError: failed" in line["exception"] for line in lines[:2])
    assert lines[1]["pool"] == "p"


def test_debug_lets_the_libraries_speak(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="debug", log_format="json")
    log_everything()
    loggers = [json.loads(text)["logger"] for text in capsys.readouterr().out.splitlines()]
    assert {"httpx", "alembic.runtime.migration"} <= set(loggers)


def test_no_local_variable_in_a_console_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="info", log_format="console")
    log_everything()
    out = capsys.readouterr().out
    assert out.count("RuntimeError: failed") == 2
    assert SECRET.upper() not in out
