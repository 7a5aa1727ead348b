"""A test that runs far longer than any test should is a hang: this plugin says where it hangs and
ends the run, instead of letting it stall until CI's limit with nothing to read.

When a test has run for ``SLOTPOOL_TEST_HANG_SECONDS`` (default 600; the slowest test, a chaos
run, takes about a minute), a thread writes to the terminal, past pytest's capture:

* every thread's stack (``faulthandler``): a call blocking the event loop shows here;
* every asyncio task's stack on every running event loop: what each task awaits, for a loop that
  runs but waits for something that never comes;

and then interrupts the run (SIGINT, as Ctrl-C would): the session's teardown still runs
(processes stopped, ``tests/support/leaks.py``) and the run fails. A run the interrupt does not
end within ``EXIT_SECONDS`` is ended there (exit 3), its stacks written again. ``0`` turns the
watchdog off.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import signal
import sys
import threading
from collections.abc import Generator
from typing import TextIO

import pytest

HANG_ENV = "SLOTPOOL_TEST_HANG_SECONDS"
DEFAULT_HANG_SECONDS = 600.0
EXIT_SECONDS = 60.0
EXIT_STATUS = 3


def _hang_seconds() -> float:
    raw = os.environ.get(HANG_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_HANG_SECONDS
    except ValueError:
        expected = "expected seconds, e.g. 600 (0: off)"
        raise pytest.UsageError(f"{HANG_ENV}={raw!r}: {expected}") from None


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    loops = (o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop))
    return [loop for loop in loops if loop.is_running()]


def dump(out: TextIO, what: str) -> None:
    """Every thread's stack and every asyncio task's on ``out``."""
    out.write(f"\n{'=' * 30} {what} {'=' * 30}\n--- threads ---\n")
    out.flush()
    faulthandler.dump_traceback(file=out, all_threads=True)
    for loop in _running_loops():
        tasks = asyncio.all_tasks(loop)
        out.write(f"--- {len(tasks)} asyncio tasks on {loop!r} ---\n")
        for task in tasks:
            out.write(f"{task!r}\n")
            task.print_stack(limit=12, file=out)
    out.flush()


class Watchdog:
    def __init__(self, config: pytest.Config, seconds: float) -> None:
        self._config = config
        self._seconds = seconds

    def _dump(self, what: str) -> None:
        out = sys.__stderr__ or sys.stderr
        capman = self._config.pluginmanager.getplugin("capturemanager")
        if capman is None:
            dump(out, what)
            return
        with capman.global_and_fixture_disabled():
            dump(out, what)

    def _fire(self, nodeid: str, ended: threading.Event) -> None:
        self._dump(f"{nodeid} still running after {self._seconds:.0f} s ({HANG_ENV})")
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)  # wakes an event loop waiting in select too
        if not ended.wait(EXIT_SECONDS):
            self._dump(f"{nodeid}: the interrupt did not end it within {EXIT_SECONDS:.0f} s")
            os._exit(EXIT_STATUS)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        ended = threading.Event()
        timer = threading.Timer(self._seconds, self._fire, args=(item.nodeid, ended))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            ended.set()
            timer.cancel()


def pytest_configure(config: pytest.Config) -> None:
    seconds = _hang_seconds()
    if seconds > 0:
        config.pluginmanager.register(Watchdog(config, seconds), "slotpool-watchdog")
