"""The pytest hooks that fail a test run which leaves a process behind (see ``processes``).

At the start the pytest process becomes a child subreaper, so whatever the suite starts stays its
descendant, orphaned or not. At the end, after every fixture has been torn down, a descendant
still alive after a grace period (``SLOTPOOL_TEST_LEFTOVER_GRACE`` seconds, default 5: a step
that just saw its file may finish) was left behind: each is reported with its command line and
killed, and the run fails.
"""

from __future__ import annotations

import os

import pytest

from tests.support import processes

GRACE_ENV = "SLOTPOOL_TEST_LEFTOVER_GRACE"


def pytest_sessionstart(session: pytest.Session) -> None:
    processes.become_subreaper()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found = processes.leftovers(grace=float(os.environ.get(GRACE_ENV, "5")))
    processes.end(found)
    if not found:
        return
    title = f"{len(found)} process(es) started by the test run outlived it (now killed)"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", title, red=True)
        for leftover in found:
            reporter.write_line(f"  {leftover}", red=True)
    else:
        print("\n".join([title, *(f"  {leftover}" for leftover in found)]))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
