"""A Python the local runtime's agent user can run, for servers the tests start as root.

A server running as root starts its local agents as ``nobody`` (``SLOTPOOL_LOCAL_AGENT_USER``),
and ``nobody`` must be able to run the interpreter: a Python installed under ``/root`` (pyenv),
as on the machines these tests run on, is closed to it. Then a virtual environment is made in
the system's temporary directory over a system Python of the same version, open to everyone,
that finds this environment's packages (a ``.pth`` line) and, through the ``PYTHONPATH`` the
runtime passes, this checkout's slotpool. Where the test's own interpreter is open to ``nobody``
(or the tests do not run as root), nothing is made.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

AGENT_USER = "nobody"
PROBE = "import httpx, structlog, slotpool.agent.main"


@functools.cache
def agent_python() -> Path | None:
    """The interpreter for ``SLOTPOOL_LOCAL_AGENT_PYTHON``; None: the server's own will do."""
    if os.geteuid() != 0 or _runs_as_agent_user(Path(sys.executable)):
        return None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path("/usr/bin") / version, Path("/usr/local/bin") / version):
        if candidate.exists() and _open_to_everyone(candidate):
            return _environment_over(candidate)
    raise RuntimeError(
        f"{AGENT_USER} cannot run {sys.executable} and there is no system {version} to make an "
        "environment it can run: local agents cannot be started as an unprivileged user here"
    )


def _environment_over(base: Path) -> Path:
    where = Path(tempfile.mkdtemp(prefix="slotpool-agent-python-"))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    where.chmod(0o755)
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(where)], check=True)
    site_packages = sysconfig.get_path("purelib", vars={"base": str(where)})
    Path(site_packages, "slotpool-tests.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = where / "bin" / "python"
    if not _runs_as_agent_user(python):
        raise RuntimeError(f"{AGENT_USER} cannot import slotpool's dependencies with {python}")
    return python


def _runs_as_agent_user(python: Path) -> bool:
    source = str(Path(__file__).resolve().parents[2] / "src")
    try:
        done = subprocess.run(
            [str(python), "-c", PROBE],
            user=AGENT_USER,
            cwd="/",
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": source},
            capture_output=True,
            timeout=60,
        )
    except OSError:
        return False
    return done.returncode == 0


def _open_to_everyone(path: Path) -> bool:
    resolved = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [resolved, *resolved.parents])
