"""The local runtime: a "pod" is an agent process on this host.

It is started from the domain's ``AgentSpec`` with the spec's environment, the one the Pod builder
puts into a Pod (same variable names; the token's ``SecretRef`` resolved from a file the runtime
keeps like a Secret, the agent's name its own), in its own session so it outlives a control plane
that is killed, and its output goes to a file. What only a container has (image, command,
resources, the Kubernetes part) means nothing here: the agent is this installation's.

Each pod leaves a record (pid, the process's start time, pool, name) on disk, so a restarted
control plane finds its pods again rather than trusting memory. A pid is only ever signalled
while the process behind it is still the one started (the kernel's start time of the pid matches
the record's), never a process that got the pid later. Deleting a pod ends its whole process
group: SIGTERM (the agent drains), then SIGKILL after the grace period. Closing the runtime (the
server stopping) starts no agent any more and stops every agent it has; agents of a server that
crashed go on, and its next start finds them.

What an agent can reach: it gets a minimal environment (``PATH``, ``LANG``/``LC_*``, ``TZ``, a
``HOME``, the ``PYTHONPATH`` that finds slotpool, the server's ``SLOTPOOL_LOG_FORMAT`` and
``SLOTPOOL_LOG_LEVEL``, then the spec's variables), never the server's (its database URL, cloud
credentials, admin token). When the server runs as root, agents
(and so their steps) run as an unprivileged user (``AgentUser``, ``nobody`` by default) with no
supplementary groups, in a work directory of their own outside the runtime's directories, which,
like every file of the server, they cannot read. Run by an ordinary user, agents are that user:
they can read whatever the server's user can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import slotpool
from slotpool.domain.agent_spec import (
    TOKEN_SECRET_KEY,
    AgentNameRef,
    AgentSpec,
    EnvValue,
    PodUidRef,
    token_secret_name,
)
from slotpool.hardening import narrow_if_exists, private_directory
from slotpool.runtime.base import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    Capability,
    RuntimePod,
    SecretOutcome,
)
from slotpool.runtime.errors import PermanentRuntimeError, TemporaryRuntimeError

NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
POLL_SECONDS = 0.05
# Only pods whose slots are all idle are deleted: their agent exits at once on SIGTERM.
DELETE_GRACE_SECONDS = 10.0
DEFAULT_AGENT_USER = "nobody"  # when the server runs as root
# And every LC_*: nothing secret. The log settings too: a local agent logs as its server does.
PASSED_ON = frozenset(
    {"PATH", "LANG", "LANGUAGE", "TZ", "SLOTPOOL_LOG_FORMAT", "SLOTPOOL_LOG_LEVEL"}
)
SHUTTING_DOWN = "the server is shutting down: it starts no agent any more"


class AgentUserError(ValueError):
    """The user asked for local agents cannot be had; the message says why."""


@dataclass(frozen=True)
class AgentUser:
    """The unprivileged user local agents run as when the server runs as root."""

    name: str
    uid: int
    gid: int
    home: Path


def agent_user(name: str | None) -> AgentUser | None:
    """The user agents run as, None for the server's own: as root, ``name`` or ``nobody``; as
    anyone else, only that user itself (a process cannot start another user's processes)."""
    root = os.geteuid() == 0
    if name is None and not root:
        return None
    wanted = name or DEFAULT_AGENT_USER
    try:
        entry = pwd.getpwnam(wanted)
    except KeyError:
        raise AgentUserError(f"there is no user {wanted!r} on this host") from None
    if entry.pw_uid == os.geteuid():
        return None
    if not root:
        raise AgentUserError(
            f"only a server running as root can run agents as another user ({wanted!r}); "
            "unset it to run them as the server's user"
        )
    return AgentUser(wanted, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


@dataclass(frozen=True)
class AgentProcess:
    """An agent process as the kernel names it for good: its pid and the start time of that pid
    (``/proc/<pid>/stat``, clock ticks since boot). None for a record of an older version."""

    pid: int
    start_time: int | None

    @classmethod
    def started(cls, pid: int) -> AgentProcess:
        return cls(pid, _start_time(pid))

    def alive(self) -> bool:
        """Whether the pid still runs this process (not one that got the pid since)."""
        if self.start_time is None:  # an older record: the command line says if it is an agent
            return b"slotpool.agent" in _read_proc(self.pid, "cmdline")
        return _start_time(self.pid) == self.start_time

    def signal_group(self, signum: signal.Signals) -> None:
        """Signal its process group, only while the pid is still this process."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)


def _read_proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``; None when there is no such process or it is a zombie."""
    raw = _read_proc(pid, "stat").decode(errors="replace")
    fields = raw[raw.rfind(")") + 2 :].split()  # after the command, which may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class LocalPod:
    name: str
    pool_id: str
    pid: int
    config_hash: str
    log_path: Path
    alive: bool
    exit_code: int | None
    created_at: datetime
    uid: str | None = None  # the launch secret its agent registers with (None: older record)

    def as_runtime_pod(self) -> RuntimePod:
        if self.alive:
            phase, reason, message = RUNNING, None, None
        else:
            code = "unknown" if self.exit_code is None else str(self.exit_code)
            phase = SUCCEEDED if self.exit_code == 0 else FAILED
            reason, message = "Exited", f"agent process ended (exit code {code})"
        return RuntimePod(
            name=self.name,
            namespace="",
            pool_id=self.pool_id,
            config_hash=self.config_hash,
            phase=phase,
            node="localhost",
            reason=reason,
            message=message,
            created_at=self.created_at,
            deleting=False,
            ip=None,
            uid=self.uid,
        )


class LocalRuntime:
    """Implements ``slotpool.runtime.base.PodRuntime``; namespaces mean nothing here."""

    name = "local"
    capabilities: frozenset[Capability] = frozenset()  # no watch (resyncs see it), no dry run

    def __init__(
        self, base_dir: Path, *, user: AgentUser | None = None, python: Path | None = None
    ) -> None:
        """Agents run as ``user`` (None: this process's user) with ``python`` (default: this
        process's interpreter)."""
        self._pods_dir = base_dir / "pods"
        self._secrets_dir = base_dir / "secrets"
        self._work_dir = base_dir / "work"
        for directory in (base_dir, self._pods_dir, self._secrets_dir, self._work_dir):
            private_directory(directory)
        for secret in self._secrets_dir.iterdir():
            narrow_if_exists(secret)  # token files of an older version may be 0644
        self.user = user
        self._python = str(python or sys.executable)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._closing = False

    # -- secrets -------------------------------------------------------------------------------

    def read_secret(self, name: str) -> dict[str, str] | None:
        path = self._secrets_dir / f"{name}.json"
        if not path.exists():
            return None
        data: dict[str, str] = json.loads(path.read_text())
        return data

    def write_secret(self, name: str, data: dict[str, str]) -> None:
        path = self._secrets_dir / f"{name}.json"
        temporary = path.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)  # created anew, so with the mode below
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        temporary.replace(path)

    # -- the PodRuntime protocol (base.py) -----------------------------------------------------

    async def prepare(self, namespace: str) -> None:
        return None

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        secret = self.read_secret(token_secret_name(pool_id))
        return None if secret is None else secret.get(TOKEN_SECRET_KEY)

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        name = token_secret_name(pool_id)
        existing = self.read_secret(name)
        if existing is not None and existing.get(TOKEN_SECRET_KEY) == token:
            return "unchanged"
        self.write_secret(name, {TOKEN_SECRET_KEY: token})
        return "created" if existing is None else "updated"

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        (self._secrets_dir / f"{token_secret_name(pool_id)}.json").unlink(missing_ok=True)

    async def pods(self, namespace: str, pool_id: str, *, fresh: bool = False) -> list[RuntimePod]:
        return [pod.as_runtime_pod() for pod in self.list_pods(pool_id)]

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        return [pod.as_runtime_pod() for pod in self.list_pods()]

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        return self.start_agent(spec).as_runtime_pod()

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self.stop_pod(name, grace_seconds=DELETE_GRACE_SECONDS)

    async def close(self) -> None:
        """The server stops: no agent is started any more, and every agent is stopped (idle
        ones exit at once on SIGTERM). A crashed server's agents go on; its next start finds
        them."""
        self.refuse_new_agents()
        pods = self.list_pods()
        await asyncio.gather(
            *(self.stop_pod(pod.name, grace_seconds=DELETE_GRACE_SECONDS) for pod in pods)
        )

    def refuse_new_agents(self) -> None:
        """From now on ``create_agent`` fails (the server is shutting down)."""
        self._closing = True

    # -- pods ----------------------------------------------------------------------------------

    def start_agent(self, spec: AgentSpec) -> LocalPod:
        """Start the agent process ``spec`` describes, named like a Pod of its pool."""
        if self._closing:
            raise TemporaryRuntimeError(status=None, message=SHUTTING_DOWN)
        name = spec.name_prefix + "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))
        pool_id, config_hash = spec.pool_id, spec.config_hash
        work_dir = self._make_work_dir(name)
        # The pod's uid: a launch secret only this agent process learns, its proof that it is
        # the agent slotpool started (domain/agent_identity.py).
        uid = secrets.token_urlsafe(32)
        env = self._environment(spec.environment, name, work_dir, uid)
        log_path = self._pods_dir / f"{name}.log"
        try:
            child = self._launch(env, work_dir, log_path)
        except OSError as exc:
            shutil.rmtree(work_dir, ignore_errors=True)
            who = "this server's user" if self.user is None else f"user {self.user.name!r}"
            raise PermanentRuntimeError(
                status=None,
                message=f"cannot start {self._python} as {who} in {work_dir}: {exc.strerror} "
                "(the agent's user must be able to run that Python and read slotpool)",
            ) from exc
        self._children[name] = child
        agent = AgentProcess.started(child.pid)
        created = datetime.now(UTC)
        record = {
            "name": name,
            "pool_id": pool_id,
            "pid": child.pid,
            "start_time": agent.start_time,
            "config_hash": config_hash,
            "created_at": created.isoformat(),
            "work_dir": str(work_dir),
            "uid": uid,
        }
        record_fd = os.open(self._pods_dir / f"{name}.json", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(record_fd, "w") as handle:
            json.dump(record, handle)
        return LocalPod(name, pool_id, child.pid, config_hash, log_path, True, None, created, uid)

    def _launch(
        self, env: dict[str, str], work_dir: Path, log_path: Path
    ) -> subprocess.Popen[bytes]:
        user = self.user
        as_user: dict[str, Any] = (
            {} if user is None else {"user": user.uid, "group": user.gid, "extra_groups": []}
        )
        with log_path.open("ab") as log:
            return subprocess.Popen(  # argv is ours, no shell; -P: not the cwd on sys.path
                [self._python, "-P", "-m", "slotpool.agent"],
                env=env,
                cwd=work_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **as_user,
            )

    def _make_work_dir(self, name: str) -> Path:
        """The agent's own directory (its tasks' working directories go below): in the
        runtime's private directory when it runs as this user; else in the system's temporary
        directory (the runtime's is closed to it), made 0700 by ``mkdtemp`` and given to it."""
        if self.user is None:
            return private_directory(self._work_dir / name)
        path = Path(tempfile.mkdtemp(prefix=f"slotpool-{name}-"))
        os.chown(path, self.user.uid, self.user.gid)
        return path

    def _environment(
        self, spec_env: Mapping[str, EnvValue], name: str, work_dir: Path, uid: str
    ) -> dict[str, str]:
        """What the agent needs and nothing of the server's own environment, then the spec's."""
        env = {k: v for k, v in os.environ.items() if k in PASSED_ON or k.startswith("LC_")}
        home = self.user.home if self.user is not None else Path(os.environ.get("HOME", "/"))
        env["HOME"] = str(home if home.is_dir() else work_dir)
        env["PYTHONPATH"] = _python_path()
        for variable, value in spec_env.items():
            if isinstance(value, str):
                env[variable] = value
            elif isinstance(value, AgentNameRef):
                env[variable] = name
            elif isinstance(value, PodUidRef):
                env[variable] = uid
            else:
                env[variable] = (self.read_secret(value.secret) or {}).get(value.key, "")
        env["SLOTPOOL_WORK_DIR"] = str(work_dir)
        return env

    def list_pods(self, pool_id: str | None = None) -> list[LocalPod]:
        pods = []
        for record_path in sorted(self._pods_dir.glob("*.json")):
            record = json.loads(record_path.read_text())
            if pool_id is not None and record["pool_id"] != pool_id:
                continue
            alive, code = self._state(record["name"], _process(record))
            pods.append(
                LocalPod(
                    name=record["name"],
                    pool_id=record["pool_id"],
                    pid=record["pid"],
                    config_hash=record["config_hash"],
                    log_path=self._pods_dir / f"{record['name']}.log",
                    alive=alive,
                    exit_code=code,
                    created_at=_created_at(record, record_path),
                    uid=record.get("uid"),
                )
            )
        return pods

    def _state(self, name: str, agent: AgentProcess) -> tuple[bool, int | None]:
        child = self._children.get(name)
        if child is not None:
            code = child.poll()
            return code is None, code
        return agent.alive(), None  # a pod of an earlier control plane

    def forget(self, name: str) -> None:
        """Drop the record of an ended pod and its work directory (its log stays)."""
        record_path = self._pods_dir / f"{name}.json"
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(record_path.read_text())
            shutil.rmtree(record.get("work_dir", self._work_dir / name), ignore_errors=True)
        record_path.unlink(missing_ok=True)
        self._children.pop(name, None)

    async def stop_pod(self, name: str, *, grace_seconds: float = 30.0) -> None:
        """SIGTERM the pod's process group (the agent drains), SIGKILL after the grace; a pid
        that is no longer the agent's is not signalled."""
        record_path = self._pods_dir / f"{name}.json"
        if not record_path.exists():
            return  # like a 404 on delete: already gone is success
        agent = _process(json.loads(record_path.read_text()))
        agent.signal_group(signal.SIGTERM)
        for _ in range(max(1, int(grace_seconds / POLL_SECONDS))):
            if not self._state(name, agent)[0]:
                break
            await asyncio.sleep(POLL_SECONDS)
        agent.signal_group(signal.SIGKILL)
        child = self._children.get(name)
        if child is not None:
            await asyncio.to_thread(child.wait)
        self.forget(name)


def _process(record: dict[str, Any]) -> AgentProcess:
    return AgentProcess(int(record["pid"]), record.get("start_time"))


def _python_path() -> str:
    """Where this process found slotpool first, then the server's own ``PYTHONPATH``."""
    found = [str(Path(slotpool.__file__).resolve().parent.parent)]
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and entry not in found:
            found.append(entry)
    return os.pathsep.join(found)


def _created_at(record: dict[str, Any], path: Path) -> datetime:
    if "created_at" in record:
        return datetime.fromisoformat(record["created_at"])
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)  # a record of an older version
