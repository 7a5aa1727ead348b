"""What an agent needs to know, read once from its environment and passed in.

The Pod builder and the local runtime set the same variables (docs/agent-protocol.md), so one
reader serves both; a missing or malformed variable is named in the error, because an agent that
starts half-configured would only fail later and less clearly.

Optional variables beyond the protocol's:

* ``SLOTPOOL_WORK_DIR``: where task working directories go (default: a directory under the
  system's temporary directory, one per pool and agent name).
* ``SLOTPOOL_CANCEL_GRACE_SECONDS``: SIGTERM to SIGKILL of a cancelled or timed-out step (10).
* ``SLOTPOOL_DRAIN_GRACE_SECONDS``: how long running steps may go on after SIGTERM (60).
* ``SLOTPOOL_POD_UID``: the pod's uid, its proof at registration (set by slotpool for the pods
  it launches; static agents have none).
* ``SLOTPOOL_STEP_USER``: who steps run as (``isolation.py``): a user name or uid, ``none`` for
  the agent's own user; unset: ``nobody`` if the agent runs as root.
* ``SLOTPOOL_STEP_ENV``: names of the agent's variables its steps get too (comma-separated; the
  pool's ``env``, set by slotpool), beside the base every step gets (``runner.py``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from slotpool import __version__
from slotpool.agent.isolation import IsolationError, StepUser, step_user

SERVER_URL = "SLOTPOOL_SERVER_URL"
POOL_ID = "SLOTPOOL_POOL_ID"
AGENT_NAME = "SLOTPOOL_AGENT_NAME"
SLOTS = "SLOTPOOL_SLOTS"
TOKEN = "SLOTPOOL_AGENT_TOKEN"  # the variable's name, not a secret
POD_UID = "SLOTPOOL_POD_UID"  # the variable's name, not a secret
STEP_USER = "SLOTPOOL_STEP_USER"
STEP_ENV = "SLOTPOOL_STEP_ENV"
PREFIX = "SLOTPOOL_"  # slotpool's own variables: never passed on to a step
SECRETS = (TOKEN, POD_UID)  # taken out of the agent's environment once read
WORK_DIR = "SLOTPOOL_WORK_DIR"
CANCEL_GRACE = "SLOTPOOL_CANCEL_GRACE_SECONDS"
DRAIN_GRACE = "SLOTPOOL_DRAIN_GRACE_SECONDS"


T = TypeVar("T", int, float)


class ConfigError(ValueError):
    """The agent's environment is incomplete or malformed; the message names the variable."""


@dataclass(frozen=True)
class AgentConfig:
    server_url: str
    pool_id: str
    name: str
    slots: int
    token: str = field(repr=False)
    work_dir: Path
    pod_uid: str | None = field(default=None, repr=False)
    step_user: StepUser | None = None  # None: steps run as the agent's own user
    # The agent's variables its steps get beside the base (the pool's env).
    step_env: Mapping[str, str] = field(default_factory=dict)
    # Used until the control plane's register answer says otherwise.
    heartbeat_seconds: float = 5.0
    claim_wait_seconds: float = 25.0
    # SIGTERM to SIGKILL when a step is cancelled or times out.
    grace_seconds: float = 10.0
    # After SIGTERM: how long running steps may finish before they are cancelled.
    drain_grace_seconds: float = 60.0
    # After a drain: how long undelivered results and logs are retried before the agent gives up.
    flush_seconds: float = 30.0
    # Reconnect back-off: the first delay, doubled per failure up to the cap.
    retry_first_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    version: str = __version__

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ConfigError(f"slots must be at least 1, not {self.slots}")
        if not self.server_url.startswith(("http://", "https://")):
            raise ConfigError(f"the server URL must be http(s)://..., not {self.server_url!r}")
        for name in ("grace_seconds", "drain_grace_seconds", "flush_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AgentConfig:
        pool_id = _required(environ, POOL_ID)
        name = _required(environ, AGENT_NAME)
        work_dir = environ.get(WORK_DIR) or str(
            Path(tempfile.gettempdir()) / f"slotpool-{pool_id}-{name}"
        )
        try:
            user = step_user(environ.get(STEP_USER))
        except IsolationError as exc:
            raise ConfigError(str(exc)) from None
        passed = [n.strip() for n in environ.get(STEP_ENV, "").split(",") if n.strip()]
        return cls(
            server_url=_url(environ, SERVER_URL),
            pool_id=pool_id,
            name=name,
            slots=_number(environ, SLOTS, int, None),
            token=_required(environ, TOKEN),
            work_dir=Path(work_dir),
            pod_uid=environ.get(POD_UID, "").strip() or None,
            step_user=user,
            step_env={n: environ[n] for n in passed if n in environ and not n.startswith(PREFIX)},
            grace_seconds=_number(environ, CANCEL_GRACE, float, 10.0),
            drain_grace_seconds=_number(environ, DRAIN_GRACE, float, 60.0),
        )


def _required(environ: Mapping[str, str], variable: str) -> str:
    value = environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"{variable} is not set: the agent cannot start without it")
    return value


def _url(environ: Mapping[str, str], variable: str) -> str:
    url = _required(environ, variable)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{variable} must be an http(s):// URL, not {url!r}")
    return url.rstrip("/")


def _number(environ: Mapping[str, str], variable: str, kind: type[T], default: T | None) -> T:
    raw = environ.get(variable, "").strip()
    if not raw and default is not None:
        return default
    if not raw:
        raise ConfigError(f"{variable} is not set: the agent cannot start without it")
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number, not {raw!r}") from None
    if value < 0 or (kind is int and value < 1):
        raise ConfigError(f"{variable} must be positive, not {raw!r}")
    return value
