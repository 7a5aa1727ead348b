"""What one agent of a pool is, whatever runs it: the spec every runtime starts agents from.

Runtimes used to receive a Kubernetes Pod manifest, so the local runtime read a Pod back to start a
process, and any other runtime (Nomad, plain Docker) would have had to do the same. The domain now
builds one ``AgentSpec`` from the pool's configuration and identity (``agent_spec(config,
context)``); the Kubernetes runtime turns it into the Pod with the one Pod builder
(``manifest.pod_manifest``), the local runtime starts a process from it, and the preview renders
the same spec with the same builder, so the preview stays exactly what runs.

The token is never in a spec: the environment holds a ``SecretRef`` to the pool's token secret,
which each runtime resolves its own way (Kubernetes: a ``secretKeyRef``; local: its secret file).

The Kubernetes-only fields of the configuration (pull policy, service account, node selector,
tolerations) travel in the spec untouched, as ``KubernetesPart``, which other runtimes ignore.
The alternative, a Pod builder taking (spec, config), was not chosen: then a runtime would need the
config beside the spec, and the Pod it creates could come from a config other than the one the
spec and its hash were built from. With the part inside, the spec is all a runtime receives, and
the config hash on it covers everything that shapes the agent (``config.POD_FIELDS``).

Pure: no I/O, no clock. Mappings are read-only and keep their order (the Pod's order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias, TypeVar

from slotpool.domain.config import PoolConfig, PullPolicy, Toleration, config_hash

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "slotpool"
COMPONENT_LABEL = "app.kubernetes.io/component"
POOL_LABEL = "slotpool.io/pool-id"
CONFIG_HASH_ANNOTATION = "slotpool.io/config-hash"
SLOTS_ANNOTATION = "slotpool.io/slots"
TOKEN_SECRET_KEY = "token"
# Bumped when the builder's output changes for the same config, so existing Pods count as outdated.
# 2: the agent gets its Pod's UID (SLOTPOOL_POD_UID), which it registers with, and the names of
# the pool's env its steps get (SLOTPOOL_STEP_ENV).
BUILDER_VERSION = "2"
TERMINATION_GRACE_SECONDS = 90
V = TypeVar("V")


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


def token_secret_name(pool_id: str) -> str:
    return f"slotpool-agent-token-{pool_id}"


def pool_selector(pool_id: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{POOL_LABEL}={pool_id}"


@dataclass(frozen=True)
class PodContext:
    """Who the agent is for and where it reports; from the pool and the settings."""

    pool_id: str
    control_plane_url: str
    default_namespace: str
    token_generation: int = 0  # bumped by a token rotation, so every Pod becomes outdated

    def namespace_for(self, config: PoolConfig) -> str:
        return config.namespace or self.default_namespace

    def hash_inputs(self, config: PoolConfig) -> dict[str, str]:
        return self.hash_inputs_for(config.namespace)

    def hash_inputs_for(self, namespace: str | None) -> dict[str, str]:
        """``hash_inputs`` of a configuration whose ``namespace`` is this (None: not set),
        known without the configuration itself (the pool list reads it from the stored one)."""
        inputs = {
            "builder": BUILDER_VERSION,
            "pool_id": self.pool_id,
            "control_plane_url": self.control_plane_url,
            "namespace": namespace or self.default_namespace,
        }
        if self.token_generation:  # (absent before the first rotation: hashes stay as they were)
            inputs["token_generation"] = str(self.token_generation)
        return inputs


def pod_config_hash(config: PoolConfig, context: PodContext) -> str:
    return config_hash(config, context=context.hash_inputs(config))


@dataclass(frozen=True)
class SecretRef:
    """A value that stays in the runtime's secret store (Kubernetes: a Secret; local: a file)."""

    secret: str
    key: str


def token_ref(pool_id: str) -> SecretRef:
    """Where the pool's agent token is kept: its runtime resolves it, a spec never holds it."""
    return SecretRef(token_secret_name(pool_id), TOKEN_SECRET_KEY)


@dataclass(frozen=True)
class AgentNameRef:
    """The agent's own name, known only once the runtime created it (a Pod's generated name)."""


AGENT_NAME = AgentNameRef()


@dataclass(frozen=True)
class PodUidRef:
    """The pod's uid, known only once the runtime created it: what its agent proves itself with
    when it registers (``agent_identity``). Kubernetes: the Pod's UID; local: a launch secret."""


POD_UID = PodUidRef()
EnvValue: TypeAlias = str | SecretRef | AgentNameRef | PodUidRef


@dataclass(frozen=True)
class ResourceNeeds:
    """Requests and limits by resource name, quantities as saved (Kubernetes' grammar)."""

    requests: Mapping[str, str] = field(default_factory=_empty)
    limits: Mapping[str, str] = field(default_factory=_empty)

    def __bool__(self) -> bool:
        return bool(self.requests or self.limits)


@dataclass(frozen=True)
class KubernetesPart:
    """The configuration's Kubernetes-only fields, untouched; other runtimes ignore them."""

    image_pull_policy: PullPolicy = PullPolicy.IfNotPresent
    service_account: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=_empty)
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True)
class AgentSpec:
    """One agent of a pool, as every runtime needs it. ``environment`` is in the order the Pod
    lists it (slotpool's variables, then the pool's sorted by name); ``labels`` and
    ``annotations`` carry the pool's own and slotpool's identity (pool id, config hash, slots)."""

    pool_id: str
    namespace: str
    name_prefix: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    environment: Mapping[str, EnvValue]
    resources: ResourceNeeds
    slots: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    config_hash: str
    termination_grace_seconds: int = TERMINATION_GRACE_SECONDS
    kubernetes: KubernetesPart = field(default_factory=KubernetesPart)

    @property
    def token(self) -> SecretRef:
        return token_ref(self.pool_id)


def agent_spec(config: PoolConfig, context: PodContext) -> AgentSpec:
    """The agent a pool with ``config`` runs, for ``context``'s pool and control plane."""
    digest = pod_config_hash(config, context)
    return AgentSpec(
        pool_id=context.pool_id,
        namespace=context.namespace_for(config),
        name_prefix=f"slotpool-{context.pool_id}-",
        image=config.image or "",
        command=tuple(config.command or ()),
        args=tuple(config.args or ()),
        environment=_frozen(_environment(config, context)),
        resources=_resources(config),
        slots=config.slots_per_pod,
        labels=_frozen(_labels(config, context)),
        annotations=_frozen(_annotations(config, digest)),
        config_hash=digest,
        kubernetes=_kubernetes_part(config),
    )


def _environment(config: PoolConfig, context: PodContext) -> dict[str, EnvValue]:
    injected: dict[str, EnvValue] = {
        "SLOTPOOL_SERVER_URL": context.control_plane_url,
        "SLOTPOOL_POOL_ID": context.pool_id,
        "SLOTPOOL_AGENT_NAME": AGENT_NAME,
        "SLOTPOOL_SLOTS": str(config.slots_per_pod),
        "SLOTPOOL_AGENT_TOKEN": token_ref(context.pool_id),
        "SLOTPOOL_POD_UID": POD_UID,
    }
    if config.env:  # the agent passes these on to its steps, and nothing else of its own
        injected["SLOTPOOL_STEP_ENV"] = ",".join(sorted(config.env))
    # Sorted: a database may not keep a JSON object's key order, and the hash must not move.
    # (The pool's names cannot clash with slotpool's: SLOTPOOL_* is refused in a config.)
    return injected | {name: config.env[name] for name in sorted(config.env)}


def _labels(config: PoolConfig, context: PodContext) -> dict[str, str]:
    identity = {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "agent", POOL_LABEL: context.pool_id}
    return {**config.labels, **identity}


def _annotations(config: PoolConfig, digest: str) -> dict[str, str]:
    identity = {CONFIG_HASH_ANNOTATION: digest, SLOTS_ANNOTATION: str(config.slots_per_pod)}
    return {**config.annotations, **identity}


def _resources(config: PoolConfig) -> ResourceNeeds:
    if config.resources is None:
        return ResourceNeeds()
    requests, limits = config.resources.requests, config.resources.limits
    return ResourceNeeds(requests=_frozen(requests), limits=_frozen(limits))


def _kubernetes_part(config: PoolConfig) -> KubernetesPart:
    return KubernetesPart(
        image_pull_policy=config.image_pull_policy,
        service_account=config.service_account,
        node_selector=_frozen(config.node_selector),
        tolerations=tuple(config.tolerations),
    )


def _frozen(values: Mapping[str, V]) -> Mapping[str, V]:
    return MappingProxyType(dict(values))
