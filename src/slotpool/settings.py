"""Typed settings, read once from the environment (prefix ``SLOTPOOL_``) and passed in.

Nothing below the entry points reads the environment itself: the CLI and the app factory build one
``Settings`` and hand it down, so tests can run several differently configured servers side by side.
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    production = "production"


# An agent's log chunk (at most 131,072 characters, up to 6 bytes each once JSON-escaped) fits.
MIN_REQUEST_BYTES = 1_048_576


def default_data_dir() -> Path:
    return Path(user_data_dir("slotpool", appauthor=False))


DATABASE_FILE = "slotpool.db"


def default_database_path(data_dir: Path) -> Path:
    """The SQLite database in ``data_dir``. Older versions kept it in the default data directory
    whatever SLOTPOOL_DATA_DIR said: such a database, if ``data_dir`` has none yet, is still the
    one used (``older_database`` names it, the server warns) rather than an empty new one."""
    path = data_dir / DATABASE_FILE
    older = default_data_dir() / DATABASE_FILE
    return older if not path.exists() and older.exists() and older != path else path


def default_replica_id() -> str:
    """``<hostname>-<pid>``: in Kubernetes the hostname is the Pod's name."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Everything an operator can set. Each field is documented in the README's table."""

    model_config = SettingsConfigDict(env_prefix="SLOTPOOL_", extra="ignore")

    environment: Environment = Environment.development
    database_url: str = Field(
        default="",
        description="sqlite:///path or postgresql://user:pass@host/db (psycopg 3 is used); "
        "default: sqlite:///<data_dir>/slotpool.db.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Admin bearer token. If unset, one is generated on first start, printed once "
        "and stored hashed.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="If set, /metrics answers only requests bearing this token (Prometheus: "
        "`authorization: {credentials: ...}`); unset, /metrics is open like /healthz.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="The control-plane URL agents use; injected into every Pod.",
    )
    default_namespace: str = Field(
        default="slotpool-agents",
        description="Namespace for a k8s pool's Pods when its config names none.",
    )
    default_timezone: str = Field(
        default="UTC", description="IANA time zone of freeze windows that name none."
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="The default SQLite database, the local runtime's pods' records, logs and "
        "token files, `slotpool up`'s admin token; only the server's user can enter it (0700).",
    )
    local_runtime: bool = Field(
        default=True, description="Run the pods of local pools as processes on this host."
    )
    local_agent_user: str | None = Field(
        default=None,
        description="The user local agents (and so their tasks) run as. Default: `nobody` when "
        "the server runs as root, else the server's own user (the only one it can start "
        "processes as).",
    )
    local_agent_python: Path | None = Field(
        default=None,
        description="The Python that runs local agents (default: the server's own); the agent "
        "user must be able to run it and read slotpool's installation.",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig of the cluster that runs k8s pools' Pods. Unset (and not in "
        "cluster): k8s pools can be configured and previewed, but get no Pods.",
    )
    kubernetes_in_cluster: bool = Field(
        default=False,
        description="Use the in-cluster service account instead of a kubeconfig.",
    )
    kube_requests_per_second: float = Field(
        default=20.0, gt=0, description="Client-side rate limit for Kubernetes API requests."
    )
    pod_sync_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How often the pods of k8s and local pools are synced with the runtime "
        "(0: only on sync-deployment and config saves).",
    )
    pod_relist_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How often the controller's Pod watch of a namespace lists its Pods again "
        "(its cache of them is otherwise fed by the watch's events alone): a guard against a "
        "missed event.",
    )
    heartbeat_seconds: int = Field(default=5, ge=1, le=300, description="Agent heartbeat.")
    agent_timeout_seconds: int = Field(
        default=30,
        ge=3,
        le=3600,
        description="An agent not heard from this long is gone: its tasks become lost.",
    )
    claim_wait_seconds: int = Field(default=25, ge=1, le=60, description="Claim long-poll.")
    max_request_bytes: int = Field(
        default=MIN_REQUEST_BYTES,
        ge=MIN_REQUEST_BYTES,
        description="The largest request body accepted; a larger one is answered 413 before it "
        "is read. At least 1 MiB: an agent's largest log chunk must fit.",
    )
    retain_tasks_days: int = Field(
        default=30,
        ge=0,
        le=36_500,
        description="Finished tasks (with their logs) are deleted this many days after they "
        "finished (0: kept forever). Tasks that have not finished are never deleted.",
    )
    retain_logs_days: int = Field(
        default=14,
        ge=0,
        le=36_500,
        description="The logs of finished tasks are deleted this many days after the task "
        "finished; the task stays (0: kept as long as the task).",
    )
    retain_events_days: int = Field(
        default=30,
        ge=0,
        le=36_500,
        description="Pool events (the controller's decisions) older than this many days are "
        "deleted (0: kept forever; each pool also keeps only its newest 1000).",
    )
    retain_history_days: int = Field(
        default=8,
        ge=0,
        le=36_500,
        description="Pool history samples (the pool page's chart) older than this many days are "
        "deleted (0: kept forever).",
    )
    history_interval_seconds: int = Field(
        default=15,
        ge=0,
        le=3600,
        description="How often the server samples every pool's slots, queue and Pods for the "
        "history chart (0: no sampling).",
    )
    replica_id: str = Field(
        default_factory=default_replica_id,
        min_length=1,
        max_length=200,
        description="This server's name among the replicas on one database (the leader "
        "election, /api/v1/cluster); default `<hostname>-<pid>`.",
    )
    leader_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="How long the leader's lease lasts unrenewed: a leader that dies is "
        "replaced within this (one that stops with SIGTERM hands over at once). On PostgreSQL "
        "it is also how long a server process that stopped answering (paused, cut off) keeps "
        "a pool's lock.",
    )
    leader_renew_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often every replica renews (the leader) or tries to take (the others) "
        "the lease; below half the lease.",
    )
    log_level: str = "info"
    ui_dir: Path | None = Field(
        default=None,
        description="The built web UI (index.html and assets); default: ui/dist of the checkout.",
    )

    def older_database(self) -> Path | None:
        """The database of an older version, outside ``data_dir``, if that is the one in use."""
        older = default_data_dir() / DATABASE_FILE
        in_use = self.database_url == f"sqlite:///{older}"
        return older if in_use and older.parent != self.data_dir else None

    @property
    def kubernetes_enabled(self) -> bool:
        return self.kubeconfig is not None or self.kubernetes_in_cluster

    log_format: str = Field(default="console", pattern="^(console|json)$")
    access_log: str = Field(
        default="on",
        pattern="^(on|all|off)$",
        description="A line per request: on (all but successful probes and scrapes of "
        "/healthz, /readyz and /metrics), all, or off.",
    )

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{default_database_path(self.data_dir)}"
        return self

    @model_validator(mode="after")
    def _renew_within_lease(self) -> Settings:
        if self.leader_renew_seconds >= self.leader_lease_seconds / 2:
            raise ValueError(
                f"SLOTPOOL_LEADER_RENEW_SECONDS ({self.leader_renew_seconds:g}) must be below half "
                f"of SLOTPOOL_LEADER_LEASE_SECONDS ({self.leader_lease_seconds:g}), so that a "
                "renewal that fails once is retried before the lease runs out"
            )
        return self

    @model_validator(mode="after")
    def _no_weak_secrets_in_production(self) -> Settings:
        token = self.admin_token
        weak = token is not None and len(token.get_secret_value()) < 24
        if self.environment is Environment.production and weak:
            raise ValueError("SLOTPOOL_ADMIN_TOKEN must be at least 24 characters in production")
        return self
