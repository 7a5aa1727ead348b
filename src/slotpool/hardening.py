"""What a process of slotpool does to keep its secrets from its neighbours on the same host.

* ``make_non_dumpable``: ``prctl(PR_SET_DUMPABLE, 0)``, as ssh-agent does. The kernel then owns
  the process's ``/proc/<pid>/`` files (``environ``, ``mem``, ...) as root, so another process of
  the same user cannot read its environment or attach to it without ``CAP_SYS_PTRACE``. The flag
  is not inherited across ``exec``: a process started from this one is dumpable again.
* ``private_directory`` and ``private_file``: 0700 directories and 0600 files, created with that
  mode (never readable for a moment), an existing one narrowed to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import sys
from pathlib import Path

PR_SET_DUMPABLE = 4  # from <linux/prctl.h>
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def make_non_dumpable() -> bool:
    """Make this process non-dumpable; False where the kernel offers no such thing (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def private_directory(path: Path) -> Path:
    """``path`` (and missing parents) as a directory only its owner can enter: made with mode
    0700, or narrowed to it if it exists with more."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIRECTORY)
    _narrow(path, PRIVATE_DIRECTORY)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read: created empty with mode 0600 if missing (never
    readable by others in between), narrowed to 0600 if it exists with more."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        _narrow(path, PRIVATE_FILE)
    return path


def narrow_if_exists(path: Path, mode: int = PRIVATE_FILE) -> None:
    """Take from an existing file or directory every permission beyond ``mode``."""
    with contextlib.suppress(FileNotFoundError):
        _narrow(path, mode)


def _narrow(path: Path, mode: int) -> None:
    found = path.lstat()
    if stat.S_ISLNK(found.st_mode):
        return  # a link's mode means nothing, and what it points to is not ours to change
    current = stat.S_IMODE(found.st_mode)
    if current & ~mode:
        os.chmod(path, current & mode)
