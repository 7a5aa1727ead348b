"""The agent as a process: environment in, signals wired to a drain, exit code out.

Signal handling lives here and not in ``run_agent``, so tests (and an embedding program) drive the
drain with an ``asyncio.Event`` instead of signals. The first SIGTERM or SIGINT drains; a second
one stops at once (running steps are killed), for an operator who cannot wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

import structlog

from slotpool import logs
from slotpool.agent.agent import EXIT_FAILED, EXIT_UNAUTHORIZED, run_agent
from slotpool.agent.config import SECRETS, AgentConfig, ConfigError
from slotpool.agent.isolation import forget, make_undumpable

log = structlog.get_logger(__name__)
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run an agent configured by ``environ`` (default: the process environment, and then the
    process keeps its secrets from its steps: ``isolation.py``)."""
    env = os.environ if environ is None else environ
    configure_logging(env)
    if environ is None and not make_undumpable():
        log.warning("cannot make the agent non-dumpable: steps may read its memory")
    try:
        config = AgentConfig.from_env(env)
    except ConfigError as exc:
        # Like a bad token, a bad environment will not fix itself: no restart loop helps.
        logs.announce(f"slotpool agent: {exc}", level=logging.ERROR)
        return EXIT_UNAUTHORIZED
    if environ is None:
        forget(os.environ, *SECRETS)
    log.info("steps run as", user=config.step_user.name if config.step_user else "the agent's")
    watch_children_with_pidfds()
    return asyncio.run(run_until_signalled(config))


def watch_children_with_pidfds() -> bool:
    """Wait for steps through a pidfd in the event loop, as Python 3.12 does by itself, not
    with a new thread per step (3.11's default watcher starts one for every process). Where
    pidfds are missing (Linux before 5.3), the default stays. Returns whether it was set."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return True


async def run_until_signalled(config: AgentConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    current = asyncio.current_task()
    assert current is not None

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second signal: stopping now", signal=signum.name)
            current.cancel()
            return
        log.info("signal: draining", signal=signum.name)
        stop.set()

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await run_agent(config, stop=stop)
    except asyncio.CancelledError:
        return EXIT_FAILED
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)


def configure_logging(environ: Mapping[str, str]) -> None:
    """JSON lines or console lines, as the control plane does (same variables)."""
    logs.configure_logging(
        level=environ.get("SLOTPOOL_LOG_LEVEL", "info"),
        log_format=environ.get("SLOTPOOL_LOG_FORMAT", "console"),
    )
