"""The interpreter local agents get in the tests' servers, found once per test session.

A server running as root starts its local agents as ``nobody``; ``slotpool.runtime.agent_python``
finds (or makes) an interpreter that user can run. The tests find it once and pass it to every
server they start (``SLOTPOOL_LOCAL_AGENT_PYTHON``), instead of each server probing again.
"""

from __future__ import annotations

import functools
import os
import pwd
from pathlib import Path

from slotpool.runtime.agent_python import agent_interpreter

AGENT_USER = "nobody"


@functools.cache
def agent_python() -> Path | None:
    """The interpreter for ``SLOTPOOL_LOCAL_AGENT_PYTHON``; None: the server's own will do."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(AGENT_USER)
    return agent_interpreter(entry.pw_uid, entry.pw_gid, None)
