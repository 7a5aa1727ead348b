"""A throwaway PostgreSQL server for the test session and the benchmarks.

``PostgresServer.start(base)`` runs ``initdb`` into a fresh directory under ``base`` and starts a
server on a free TCP port of 127.0.0.1 (trust authentication, user ``postgres``, durability off).
``stop()`` shuts it down and removes the directory. PostgreSQL refuses to run as root, so when the
tests run as root the directory is handed to the ``postgres`` user and every server command runs
through ``runuser -u postgres --``; ``base`` must then be reachable by that user (``/tmp`` is).

Environment:

* ``SLOTPOOL_PG_BIN``: directory holding ``initdb`` and ``pg_ctl``. Otherwise the highest
  ``/usr/lib/postgresql/<version>/bin`` is used, then ``PATH``.
* ``SLOTPOOL_TEST_PG_URL``: URL of an existing server (its database is used for administration);
  no server is started and test databases are created on that server instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.support.ports import free_port

PG_BIN_ENV = "SLOTPOOL_PG_BIN"
PG_URL_ENV = "SLOTPOOL_TEST_PG_URL"
PG_USER = "postgres"

_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} -c fsync=off"
    " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
)
_START_ATTEMPTS = 3  # the free port may be taken between probing and binding it
_COMMAND_TIMEOUT = 120.0


class PostgresUnavailableError(Exception):
    """The PostgreSQL server binaries, or the means to run them here, are missing."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; raises ``PostgresUnavailableError``."""
    configured = os.environ.get(PG_BIN_ENV)
    if configured:
        if _has_server_tools(Path(configured)):
            return Path(configured)
        raise PostgresUnavailableError(
            f"{PG_BIN_ENV}={configured} has no executable initdb and pg_ctl"
        )
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda d: _version_key(d.parent.name)
    )
    for directory in reversed(installed):
        if _has_server_tools(directory):
            return directory
    initdb = shutil.which("initdb")
    if initdb and _has_server_tools(Path(initdb).parent):
        return Path(initdb).parent
    raise PostgresUnavailableError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in $"
        f"{PG_BIN_ENV}, /usr/lib/postgresql/*/bin or PATH; "
        "run `scripts/bootstrap --postgres` to install them"
    )


def _has_server_tools(directory: Path) -> bool:
    return all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl"))


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)


class PostgresServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, admin_url: str, *, root: Path | None = None, pg_bin: Path | None = None):
        self._admin_url = admin_url
        self._admin_parts: SplitResult = urlsplit(admin_url)
        self._root = root  # None: an external server that we neither started nor stop
        self._pg_bin = pg_bin
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, base: Path | None = None) -> PostgresServer:
        """Start a server in a new directory under ``base`` (or use ``$SLOTPOOL_TEST_PG_URL``).
        By default ``base`` is the system's temporary directory, not a private one of the
        current user: the server may have to run as the postgres user."""
        external = os.environ.get(PG_URL_ENV)
        if external:
            return cls(external)
        base = base or Path(tempfile.gettempdir())
        pg_bin = find_pg_bin()
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(PG_USER)
            except KeyError:
                raise PostgresUnavailableError(
                    f"running as root, but there is no {PG_USER!r} user to run PostgreSQL as"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailableError("running as root, but `runuser` is not installed")
        root = Path(tempfile.mkdtemp(prefix="slotpool-pg-", dir=base))
        # The real port is filled in by _launch(); until then the URL is a placeholder.
        server = cls(f"postgresql://{PG_USER}@127.0.0.1:0/postgres", root=root, pg_bin=pg_bin)
        atexit.register(server.stop)
        try:
            server._initdb()
            server._launch()
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and remove its directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._root is None:
            return
        if (self._data_dir / "postmaster.pid").exists():
            self._run(["pg_ctl", "-D", str(self._data_dir), "-m", "fast", "-w", "stop"])
        shutil.rmtree(self._root, ignore_errors=True)

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``: every client connection is cut) on
        the same port and data, as an operator's restart or a failover does."""
        if self._root is None:
            raise PostgresUnavailableError("an external server is not restarted by the tests")
        data, log = str(self._data_dir), str(self._log_file)
        self._run(["pg_ctl", "-D", data, "-l", log, "-m", "fast", "-w", "-t", "60", "restart"])

    # -- databases ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._admin_parts.port or 5432

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server, e.g. ``postgresql://postgres@127.0.0.1:5/db``."""
        return urlunsplit(self._admin_parts._replace(path="/" + quote(database, safe="")))

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its URL."""
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting its remaining sessions."""
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @contextlib.contextmanager
    def temporary_database(self) -> Iterator[str]:
        """A new, empty database ``t_<uuid hex>``: yields its URL, drops it afterwards."""
        name = f"t_{uuid.uuid4().hex}"
        url = self.create_database(name)
        try:
            yield url
        finally:
            self.drop_database(name)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self._admin_url, autocommit=True, connect_timeout=10)

    # -- the local server ----------------------------------------------------------------------

    @property
    def _data_dir(self) -> Path:
        assert self._root is not None
        return self._root / "data"

    @property
    def _socket_dir(self) -> Path:
        assert self._root is not None
        return self._root / "socket"

    @property
    def _log_file(self) -> Path:
        assert self._root is not None
        return self._root / "postgres.log"

    def _initdb(self) -> None:
        assert self._root is not None
        self._socket_dir.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam(PG_USER)
            for path in (self._root, self._socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            if self._run(["test", "-w", str(self._root)], check=False).returncode != 0:
                raise RuntimeError(
                    f"user {PG_USER!r} cannot write {self._root}: "
                    "pass a base directory that user can reach (e.g. /tmp)"
                )
        self._run(
            [
                "initdb", "-D", str(self._data_dir), "-A", "trust", "-U", PG_USER,
                "--no-sync", "-E", "UTF8", "--locale=C",
            ]
        )  # fmt: skip

    def _launch(self) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port()
            options = _SERVER_OPTIONS.format(
                port=port, socket_dir=shlex.quote(str(self._socket_dir))
            )
            result = self._run(
                [
                    "pg_ctl", "-D", str(self._data_dir), "-l", str(self._log_file),
                    "-w", "-t", "60", "-o", options, "start",
                ],
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                self._admin_url = f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
                self._admin_parts = urlsplit(self._admin_url)
                return
            log = self._log_tail()
            if attempt < _START_ATTEMPTS and "could not bind" in log:
                continue
            raise RuntimeError(
                f"pg_ctl start failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n--- {self._log_file} ---\n{log}"
            )

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self._log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command as the PostgreSQL user; ``initdb``/``pg_ctl`` come from ``pg_bin``."""
        assert self._root is not None
        assert self._pg_bin is not None
        command = list(args)
        if command[0] in ("initdb", "pg_ctl"):
            command[0] = str(self._pg_bin / command[0])
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self._root,  # the postgres user may not be able to enter our working directory
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(command)} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result
