"""What keeps the agent's secrets out of its steps' reach.

A step is someone's code running next to the agent, and the agent holds what makes it an agent:
the pool token (until it registered), its pod's uid, and its own credential. So:

* the agent makes itself **non-dumpable** (``prctl(PR_SET_DUMPABLE, 0)``, as ssh-agent does):
  ``/proc/<agent>/environ``, ``/mem``, ``/fd`` and ptrace are then closed to every process of the
  same user that lacks ``CAP_SYS_PTRACE``;
* it takes the secrets out of ``os.environ`` once read (what the kernel keeps of the initial
  environment is behind the non-dumpable flag);
* steps get a **clean environment** (``runner.step_environment``): never the agent's own;
* a step running as root reads a non-dumpable process all the same (with ``CAP_SYS_PTRACE``
  anything; without it, on Linux 6.18, still ``/proc/<agent>/environ``): an agent running as
  root runs its steps as an unprivileged **step user** (``SLOTPOOL_STEP_USER``, default
  ``nobody``). An agent running as another user (the Pods slotpool builds run as non-root
  without capabilities) runs them as itself: non-dumpable suffices there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass

PR_SET_DUMPABLE = 4
DEFAULT_STEP_USER = "nobody"
NOBODY_ID = 65534  # nobody's uid and gid where it has no name
AGENT_S_OWN_USER = "none"  # SLOTPOOL_STEP_USER=none: steps run as the agent's user


class IsolationError(ValueError):
    """The step user cannot be had; the message says why."""


@dataclass(frozen=True)
class StepUser:
    """The unprivileged user steps run as."""

    name: str
    uid: int
    gid: int


def make_undumpable() -> bool:
    """Make this process non-dumpable (Linux); whether it is now."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)


def forget(environ: MutableMapping[str, str], *names: str) -> None:
    """Take secrets out of the process's environment once they were read."""
    for name in names:
        environ.pop(name, None)


def step_user(setting: str | None) -> StepUser | None:
    """Who steps run as: ``setting`` (a user name or uid; ``none``: the agent's own user), or
    unset: ``nobody`` if the agent runs as root, else the agent's own user. None: the agent's
    own user."""
    if setting is None:
        return _nobody() if os.geteuid() == 0 else None
    setting = setting.strip()
    if setting == AGENT_S_OWN_USER:
        return None
    if os.geteuid() != 0:
        raise IsolationError(
            f"SLOTPOOL_STEP_USER={setting} needs an agent running as root; unset it to run "
            "steps as the agent's own user"
        )
    return _user(setting)


def _user(name_or_uid: str) -> StepUser:
    try:
        entry = pwd.getpwuid(int(name_or_uid)) if name_or_uid.isdigit() else None
        entry = entry or pwd.getpwnam(name_or_uid)
    except KeyError:
        if name_or_uid.isdigit():  # a uid without a name (a container's) is its own group
            return StepUser(name_or_uid, int(name_or_uid), int(name_or_uid))
        raise IsolationError(
            f"SLOTPOOL_STEP_USER: no user {name_or_uid!r} on this host (a name or a uid)"
        ) from None
    return StepUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _nobody() -> StepUser:
    try:
        return _user(DEFAULT_STEP_USER)
    except IsolationError:
        return StepUser(DEFAULT_STEP_USER, NOBODY_ID, NOBODY_ID)
