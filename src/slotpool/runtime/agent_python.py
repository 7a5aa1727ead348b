"""The Python local agents run with, when they run as another user than the server.

A server running as root starts local agents as an unprivileged user (``nobody``), and that user
must be able to run the interpreter and import slotpool's packages. The server's own interpreter
often is closed to it: a Python installed under ``/root`` (pyenv, a user's venv) cannot even be
reached. Then a small virtual environment is made over a system Python of the same version that
everyone can run; a ``.pth`` line points it at the server's packages (which that user must be
able to read: a checkout under ``/root`` is not). It is kept in ``/var/cache/slotpool`` (root's,
closed to writes by anyone else), or in a fresh directory of the system's temporary directory.

Nothing here guesses silently: when no interpreter can be had, ``AgentPythonError`` says why and
what to set, and the server keeps its own interpreter (each launch then fails with that reason).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import slotpool

# What an agent needs to start; a probe that imports it as the agent's user proves the interpreter.
PROBE = "import httpx, pydantic, structlog, slotpool.agent.main"
CACHE_DIR = Path("/var/cache/slotpool")


class AgentPythonError(RuntimeError):
    """No interpreter the agent user can run; the message says what to set."""


def agent_interpreter(uid: int | None, gid: int | None, configured: Path | None) -> Path:
    """The interpreter for agents running as ``uid`` (None: this process's user): the one
    configured, else this process's own if that user can run it, else a small environment over
    a system Python of this version."""
    if configured is not None:
        return configured
    own = Path(sys.executable)
    if uid is None or gid is None or can_run(own, uid, gid):
        return own
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    bases = [
        base
        for base in (Path("/usr/bin") / version, Path("/usr/local/bin") / version)
        if base.exists() and _open_to_everyone(base)
    ]
    if not bases:
        raise AgentPythonError(
            f"the local agents' user cannot run {own}, and there is no {version} on this host "
            "that it can: set SLOTPOOL_LOCAL_AGENT_PYTHON to an interpreter it can run"
        )
    packages = sysconfig.get_path("purelib")
    python = _environment_over(bases[0], packages)
    if not can_run(python, uid, gid):
        raise AgentPythonError(
            f"the local agents' user cannot read slotpool's packages in {packages} (or "
            f"{_source_root()}): install slotpool where that user can read it, or set "
            "SLOTPOOL_LOCAL_AGENT_PYTHON"
        )
    return python


def can_run(python: Path, uid: int, gid: int) -> bool:
    """Whether ``python``, run as ``uid``, starts and imports the agent."""
    try:
        done = subprocess.run(
            [str(python), "-P", "-c", PROBE],
            user=uid,
            group=gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": _source_root()},
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _environment_over(base: Path, packages: str) -> Path:
    """A venv over ``base`` that finds ``packages``: the cached one, or one made now."""
    key = hashlib.sha256(f"{base.resolve()}\0{packages}".encode()).hexdigest()[:16]
    cached = CACHE_DIR / f"agent-python-{key}"
    if _trusted(cached / "bin" / "python"):
        return cached / "bin" / "python"
    where = Path(tempfile.mkdtemp(prefix="slotpool-agent-python-"))  # 0700, then opened below
    subprocess.run(
        [str(base), "-m", "venv", "--without-pip", str(where)], check=True, capture_output=True
    )
    site = Path(sysconfig.get_path("purelib", vars={"base": str(where)}))
    (site / "slotpool-server.pth").write_text(packages + "\n")
    where.chmod(0o755)
    try:  # keep it for the next start where only root can write
        CACHE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        if _trusted(CACHE_DIR):
            os.replace(where, cached)
            return cached / "bin" / "python"
    except OSError:
        pass
    return where / "bin" / "python"


def _trusted(path: Path) -> bool:
    """Owned by root and writable by nobody else, all the way up: nothing anyone could plant."""
    try:
        for part in [path, *path.parents]:
            info = part.lstat() if part == path else part.stat()
            link = part == path and stat.S_ISLNK(info.st_mode)  # a venv's python: a link
            writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not link
            if info.st_uid != 0 or writable:
                return False
    except OSError:
        return False
    return True


def _open_to_everyone(path: Path) -> bool:
    resolved = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [resolved, *resolved.parents])


def _source_root() -> str:
    return str(Path(slotpool.__file__).resolve().parent.parent)
