"""The local runtime: a "pod" is an agent process on this host.

It is started from the domain's ``AgentSpec`` with the spec's environment, the one the Pod builder
puts into a Pod (same variable names; the token's ``SecretRef`` resolved from a file the runtime
keeps like a Secret, the agent's name its own), in its own session so it outlives a control plane
that is killed, and its output goes to a file. What only a container has (image, command,
resources, the Kubernetes part) means nothing here: the agent is this installation's.

Each pod leaves a record (pid, pool, name) on disk, so a restarted control plane finds its pods
again rather than trusting memory. Deleting a pod ends its whole process group: SIGTERM (the
agent drains), then SIGKILL after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slotpool.domain.agent_spec import (
    TOKEN_SECRET_KEY,
    AgentNameRef,
    AgentSpec,
    EnvValue,
    PodUidRef,
    token_secret_name,
)
from slotpool.runtime.base import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    Capability,
    RuntimePod,
    SecretOutcome,
)

NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
POLL_SECONDS = 0.05
# Only pods whose slots are all idle are deleted: their agent exits at once on SIGTERM.
DELETE_GRACE_SECONDS = 10.0


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

    def __init__(self, base_dir: Path) -> None:
        self._pods_dir = base_dir / "pods"
        self._secrets_dir = base_dir / "secrets"
        self._work_dir = base_dir / "work"
        for directory in (self._pods_dir, self._secrets_dir, self._work_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

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
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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

    async def pods(self, namespace: str, pool_id: str) -> list[RuntimePod]:
        return [pod.as_runtime_pod() for pod in self.list_pods(pool_id)]

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        return [pod.as_runtime_pod() for pod in self.list_pods()]

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        return self.start_agent(spec).as_runtime_pod()

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self.stop_pod(name, grace_seconds=DELETE_GRACE_SECONDS)

    async def close(self) -> None:
        return None  # nothing held open; the agents outlive the control plane on purpose

    # -- pods ----------------------------------------------------------------------------------

    def start_agent(self, spec: AgentSpec) -> LocalPod:
        """Start the agent process ``spec`` describes, named like a Pod of its pool."""
        name = spec.name_prefix + "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))
        pool_id, config_hash = spec.pool_id, spec.config_hash
        # The pod's uid: a launch secret only this agent process learns, its proof that it is
        # the agent slotpool started (domain/agent_identity.py).
        uid = secrets.token_urlsafe(32)
        env = self._environment(spec.environment, name, uid)
        env["SLOTPOOL_WORK_DIR"] = str(self._work_dir / name)
        log_path = self._pods_dir / f"{name}.log"
        with log_path.open("ab") as log:
            child = subprocess.Popen(  # argv is ours, no shell
                [sys.executable, "-m", "slotpool.agent"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._children[name] = child
        created = datetime.now(UTC)
        record = {
            "name": name,
            "pool_id": pool_id,
            "pid": child.pid,
            "config_hash": config_hash,
            "created_at": created.isoformat(),
            "uid": uid,
        }
        record_fd = os.open(self._pods_dir / f"{name}.json", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(record_fd, "w") as handle:
            json.dump(record, handle)
        return LocalPod(name, pool_id, child.pid, config_hash, log_path, True, None, created, uid)

    def _environment(self, spec_env: Mapping[str, EnvValue], name: str, uid: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
        for variable, value in spec_env.items():
            if isinstance(value, str):
                env[variable] = value
            elif isinstance(value, AgentNameRef):
                env[variable] = name
            elif isinstance(value, PodUidRef):
                env[variable] = uid
            else:
                env[variable] = (self.read_secret(value.secret) or {}).get(value.key, "")
        return env

    def list_pods(self, pool_id: str | None = None) -> list[LocalPod]:
        pods = []
        for record_path in sorted(self._pods_dir.glob("*.json")):
            record = json.loads(record_path.read_text())
            if pool_id is not None and record["pool_id"] != pool_id:
                continue
            alive, code = self._state(record["name"], record["pid"])
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

    def _state(self, name: str, pid: int) -> tuple[bool, int | None]:
        child = self._children.get(name)
        if child is not None:
            code = child.poll()
            return code is None, code
        try:
            os.kill(pid, 0)  # a pod of an earlier control plane: is its process still there?
        except ProcessLookupError:
            return False, None
        except PermissionError:
            return True, None
        return True, None

    def forget(self, name: str) -> None:
        """Drop the record of an ended pod (its log stays)."""
        (self._pods_dir / f"{name}.json").unlink(missing_ok=True)
        self._children.pop(name, None)

    async def stop_pod(self, name: str, *, grace_seconds: float = 30.0) -> None:
        """SIGTERM the pod's process group (the agent drains), SIGKILL after the grace."""
        record_path = self._pods_dir / f"{name}.json"
        if not record_path.exists():
            return  # like a 404 on delete: already gone is success
        pid = json.loads(record_path.read_text())["pid"]
        self._signal(pid, signal.SIGTERM)
        for _ in range(max(1, int(grace_seconds / POLL_SECONDS))):
            if not self._state(name, pid)[0]:
                break
            await asyncio.sleep(POLL_SECONDS)
        self._signal(pid, signal.SIGKILL)
        child = self._children.get(name)
        if child is not None:
            await asyncio.to_thread(child.wait)
        self.forget(name)

    @staticmethod
    def _signal(pid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)


def _created_at(record: dict[str, Any], path: Path) -> datetime:
    if "created_at" in record:
        return datetime.fromisoformat(record["created_at"])
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)  # a record of an older version
