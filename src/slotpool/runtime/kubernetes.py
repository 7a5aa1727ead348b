"""The Kubernetes runtime: the only code in slotpool that talks to a Kubernetes API server.

* slotpool owns its Pods by label (managed-by and pool-id), so lists and watches select by
  those labels and the cluster, not memory, is the truth after a restart.
* Every request goes through one token bucket (``requests_per_second``), so a controller busy with
  many pools cannot flood the API server, and every failure through ``runtime_error_from``
  (in ``errors``), the one mapping into a temporary (retry later) or a permanent (report) error.
* Idempotent where the cluster allows it: deleting what is gone (404) and creating a namespace
  that exists (409) are success, so a pass that is retried after a crash does no harm.
* A watch whose resourceVersion is too old (410 Gone) lists again and carries on; the consumer
  gets the listed Pods as one ``PodSync`` event, which replaces what it knew, because changes made
  while it was not watching (a deletion, above all) are never sent again.
* The namespace watch the controller runs (``watch_pools``) also keeps a ``PodCache`` of the
  namespace: while it follows, ``pods`` answers from memory instead of a LIST, and the watch lists
  again every ``relist_seconds`` in case an event was missed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, TypeVar, cast

# lightkube's HTTP client: what a failed call raises (lightkube.ApiError is one of its errors).
import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.core.client import LabelSelector
from lightkube.models.core_v1 import ContainerStatus, PodStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod, Secret

from slotpool import metrics
from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.leadership import fence
from slotpool.domain.manifest import (
    CONFIG_HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POOL_LABEL,
    TOKEN_SECRET_KEY,
    pod_manifest,
    token_secret_name,
)
from slotpool.runtime.base import Capability, RuntimePod, SecretOutcome
from slotpool.runtime.errors import PermanentRuntimeError, RuntimeApiError, runtime_error_from
from slotpool.runtime.pod_cache import PodCache

FIELD_MANAGER = "slotpool"
# A watch request is closed and reopened (from the last version seen) after this long, so a
# connection that died without a word is noticed; the server is asked to end it a little later.
WATCH_TIMEOUT_SECONDS = 240.0
_SERVER_TIMEOUT_MARGIN_SECONDS = 5
# The namespace watch lists its Pods again this often (``pod_relist_seconds``): a guard against an
# event missed, which would otherwise stay wrong in the cache until the Pod changes again.
RELIST_SECONDS = 300.0
_CHANGE_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})
_NO_LABELS: Mapping[str, str] = MappingProxyType({})
RESTRICTED_NAMESPACE_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        MANAGED_BY_LABEL: MANAGED_BY,
    }
)

T = TypeVar("T")


class TokenBucket:
    """An async token bucket that holds one token and refills at ``rate`` tokens per second.

    Callers get evenly spaced slots ``1 / rate`` seconds apart, in the order they ask: N calls in
    a row take at least ``(N - 1) / rate`` seconds and the API server never sees a burst.
    ``rate=math.inf`` turns the limit off. No lock is needed: nothing awaits between reading and
    advancing the next slot. A caller cancelled while it waits leaves its slot unused. Time is the
    event loop's clock.
    """

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"requests_per_second must be > 0, got {rate}")
        self._interval = 0.0 if math.isinf(rate) else 1.0 / rate
        self._next_slot = -math.inf

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        slot = max(loop.time(), self._next_slot)
        self._next_slot = slot + self._interval
        if slot > loop.time():
            await asyncio.sleep(slot - loop.time())


class MeasuredTransport(httpx2.AsyncBaseTransport):
    """Every request to the API server counted by verb, resource and status, and timed (to the
    response's headers: a watch counts until it opened)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        kind = metrics.kube_request(request.method, url.path, url.query.decode("ascii", "replace"))
        started = time.perf_counter()
        code = "error"
        try:
            response = await self._inner.handle_async_request(request)
            code = str(response.status_code)
            return response
        finally:
            labels = {"verb": kind.verb, "resource": kind.resource}
            metrics.KUBERNETES_LATENCY.labels(**labels).observe(time.perf_counter() - started)
            metrics.KUBERNETES_REQUESTS.labels(**labels, code=code).inc()

    async def aclose(self) -> None:
        await self._inner.aclose()


def measured_client(config: KubeConfig | None) -> AsyncClient:
    """lightkube's client as it builds itself (``None``: in-cluster, else ``$KUBECONFIG`` or
    ``~/.kube/config``), its requests through a ``MeasuredTransport``."""
    single = (config if config is not None else KubeConfig.from_env()).get()
    if single is None or single.user is None:
        raise ValueError("the kubeconfig has no current context with a user")
    verify = verify_cluster(single.cluster, single.user, single.abs_file)
    transport = MeasuredTransport(httpx2.AsyncHTTPTransport(verify=verify))
    return AsyncClient(single, field_manager=FIELD_MANAGER, transport=transport)


@dataclass(frozen=True)
class PodChange:
    """One Pod was added, modified or deleted; ``resource_version`` is where to resume."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    pod: RuntimePod
    resource_version: str


@dataclass(frozen=True)
class PodSync:
    """Every Pod of the pool as listed just now: replaces what the consumer knew. ``listed_at``
    is when the list was asked for (``time.monotonic``)."""

    pods: tuple[RuntimePod, ...]
    resource_version: str
    listed_at: float = 0.0
    type: Literal["SYNC"] = "SYNC"


PodEvent: TypeAlias = PodChange | PodSync


class KubernetesRuntime:
    """Pods, namespaces and token Secrets of slotpool's pools in one cluster."""

    name = "kubernetes"
    capabilities = frozenset({Capability.watch, Capability.dry_run, Capability.manifests})

    def __init__(
        self,
        *,
        client: AsyncClient,
        requests_per_second: float,
        relist_seconds: float = RELIST_SECONDS,
    ) -> None:
        self._client = client
        self._bucket = TokenBucket(requests_per_second)
        self._relist_seconds = relist_seconds
        self._prepared: set[str] = set()  # namespaces known to exist: not asked again
        self._caches: dict[str, PodCache] = {}  # namespace -> its Pods, while watched

    @classmethod
    def from_kubeconfig(
        cls,
        path: Path | None,
        *,
        requests_per_second: float = 20.0,
        relist_seconds: float = RELIST_SECONDS,
    ) -> KubernetesRuntime:
        """From a kubeconfig; ``None``: in-cluster, else ``$KUBECONFIG`` or ``~/.kube/config``."""
        config = KubeConfig.from_file(path) if path is not None else None  # lightkube looks
        return cls(
            client=measured_client(config),
            requests_per_second=requests_per_second,
            relist_seconds=relist_seconds,
        )

    def cache(self, namespace: str) -> PodCache:
        """The namespace's Pods as its watch follows them (``watch_pools``)."""
        return self._caches.setdefault(namespace, PodCache())

    async def close(self) -> None:
        await self._client.close()

    # -- the one way out -----------------------------------------------------------------------

    async def _call(self, call: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
        """``call()`` once the rate limit lets it go. A ``write`` of the leader's work checks
        the leader's lease again then (``domain.leadership.fence``): ``FencedRuntime`` checked
        it before the wait, and a leader paused while it waited its turn (at 1 request/s, a
        batch of creations waits seconds) must not write once resumed past its lease."""
        await self._bucket.acquire()
        if write:
            fence()
        try:
            return await call()
        except httpx2.HTTPError as exc:
            raise runtime_error_from(exc) from exc

    async def _call_unless(
        self, status: int, call: Callable[[], Awaitable[T]], *, write: bool = False
    ) -> T | None:
        """Like ``_call``, but an answer of ``status`` (404 on delete, 409 on create) is None."""
        try:
            return await self._call(call, write=write)
        except RuntimeApiError as exc:
            if exc.status == status:
                return None
            raise

    # -- namespaces and pods -------------------------------------------------------------------

    async def ensure_namespace(self, name: str, *, labels: Mapping[str, str] = _NO_LABELS) -> None:
        """Create the namespace if it is missing (an existing one is left as it is). Without the
        right to create namespaces (403: e.g. the Helm chart's RBAC, which makes the agents'
        namespaces itself and grants nothing cluster-wide) the namespace is used as it is: if
        it does not exist, the Secret or the Pod created in it next is refused (404), naming it."""
        namespace = Namespace(metadata=ObjectMeta(name=name, labels=dict(labels) or None))
        try:
            await self._call_unless(409, lambda: self._client.create(namespace), write=True)
        except RuntimeApiError as exc:
            if exc.status != 403:
                raise

    async def create_pod(self, manifest: Mapping[str, Any]) -> RuntimePod:
        """Create a Pod from a manifest, in the manifest's namespace (``create_agent`` builds
        it with the one Pod builder; this is the request alone)."""
        pod = _pod_from_manifest(manifest)
        try:
            created = await self._call(lambda: self._client.create(pod), write=True)
        except RuntimeApiError as exc:
            if exc.status == 404:  # the namespace was deleted behind our back
                self._prepared.discard(str(manifest.get("metadata", {}).get("namespace")))
            raise
        made = runtime_pod(created)
        self.cache(made.namespace).created(made)
        return made

    async def list_pods(self, namespace: str, pool_id: str | None) -> tuple[list[RuntimePod], str]:
        """The pool's Pods (``None``: every slotpool Pod of the namespace) and the list's
        resourceVersion (where a watch starts)."""
        listing = self._client.list(Pod, namespace=namespace, labels=_selector(pool_id))
        pods = await self._call(lambda: _collect(listing))
        return [runtime_pod(pod) for pod in pods], listing.resourceVersion

    async def delete_pod(
        self, namespace: str, name: str, *, grace_seconds: int | None = None
    ) -> None:
        """Delete a Pod (``grace_seconds`` None: the Pod's own); already gone is success."""
        await self._call_unless(
            404,
            lambda: self._client.delete(Pod, name, namespace=namespace, grace_period=grace_seconds),
            write=True,
        )
        self.cache(namespace).deleting(name)

    async def watch_pools(self, namespace: str) -> AsyncGenerator[str, None]:
        """The pool of every slotpool Pod of the namespace that changes, as it changes: one
        watch for all the namespace's pools (the controller's wake-up), which keeps the
        namespace's ``PodCache`` while it runs. It starts with every pool that has Pods there
        (and so does each listing after it: a 410, every ``relist_seconds``), and goes on until
        the consumer stops or a runtime error."""
        cache = self.cache(namespace)
        events = self.watch_pods(namespace, None, None, relist_seconds=self._relist_seconds)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, PodSync):
                        cache.replace(event.pods, listed_at=event.listed_at)
                        for pool_id in sorted({p.pool_id for p in event.pods}):
                            yield pool_id
                    else:
                        cache.change(event.type, event.pod)
                        yield event.pod.pool_id
        finally:
            cache.stopped()

    async def watch_pods(
        self,
        namespace: str,
        pool_id: str | None,
        resource_version: str | None,
        *,
        timeout_seconds: float = WATCH_TIMEOUT_SECONDS,
        relist_seconds: float = math.inf,
    ) -> AsyncGenerator[PodEvent, None]:
        """The pool's Pod changes from ``resource_version`` on, until the consumer stops.

        ``None`` starts with a ``PodSync`` of the current Pods. Each watch request lasts at most
        ``timeout_seconds`` and is reopened from the last version seen; a 410 Gone lists again
        (a ``PodSync``) and watches on from the list's version, and so does the end of a request
        ``relist_seconds`` after the last listing. Other failures are raised as runtime errors;
        every ``PodChange`` carries the version to resume from.
        """
        version = resource_version
        relist_at = time.monotonic() + relist_seconds
        while True:
            if version is None or time.monotonic() >= relist_at:
                listed_at = time.monotonic()
                pods, version = await self.list_pods(namespace, pool_id)
                relist_at = listed_at + relist_seconds
                yield PodSync(tuple(pods), version, listed_at)
            window = min(timeout_seconds, relist_at - time.monotonic())
            changes = self._watch_once(namespace, pool_id, version, window)
            try:
                async with contextlib.aclosing(changes):
                    async for change in changes:
                        version = change.resource_version
                        yield change
            except RuntimeApiError as exc:
                if exc.status != 410:
                    raise
                version = None

    async def _watch_once(
        self, namespace: str, pool_id: str | None, version: str, window: float
    ) -> AsyncGenerator[PodChange, None]:
        """One watch request, ended here after ``window`` seconds (lightkube reopens unmetered)."""
        await self._bucket.acquire()
        stream = self._client.watch(
            Pod,
            namespace=namespace,
            labels=_selector(pool_id),
            resource_version=version,
            server_timeout=math.ceil(window) + _SERVER_TIMEOUT_MARGIN_SECONDS,
        )
        events = aiter(stream)
        deadline = asyncio.get_running_loop().time() + window
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        kind, pod = await anext(events)
                except (TimeoutError, StopAsyncIteration):
                    return
                except httpx2.HTTPError as exc:
                    raise runtime_error_from(exc) from exc
                if kind in _CHANGE_TYPES:
                    change = cast(Literal["ADDED", "MODIFIED", "DELETED"], kind)
                    yield PodChange(change, runtime_pod(pod), _version_of(pod))
        finally:
            if isinstance(events, AsyncGenerator):  # the consumer stopped: release the stream
                await events.aclose()

    # -- the PodRuntime protocol (base.py) -----------------------------------------------------

    async def prepare(self, namespace: str) -> None:
        """The pool's namespace, created enforcing the ``restricted`` Pod Security Standard
        (an existing one is left as its owner set it up). Asked once per namespace; a create
        answered "namespace not found" makes the next ``prepare`` ask again."""
        if namespace not in self._prepared:
            await self.ensure_namespace(namespace, labels=RESTRICTED_NAMESPACE_LABELS)
            self._prepared.add(namespace)

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        return await self.read_token_secret(namespace, pool_id)

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        return await self.ensure_token_secret(namespace, pool_id, token)

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        await self.delete_token_secret(namespace, pool_id)

    async def pods(self, namespace: str, pool_id: str, *, fresh: bool = False) -> list[RuntimePod]:
        """From the namespace's cache while its watch follows (unless ``fresh``), else listed."""
        cache = self._caches.get(namespace)
        if cache is not None and cache.following and not fresh:
            return cache.pool(pool_id)
        return (await self.list_pods(namespace, pool_id))[0]

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        return (await self.list_pods(namespace, None))[0]

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        """The spec's Pod, built by the one Pod builder: the preview shows the same manifest."""
        return await self.create_pod(pod_manifest(spec))

    async def dry_run(self, spec: AgentSpec) -> dict[str, Any]:
        """The spec's Pod as the API server would admit it (validation, defaults, Pod Security
        and other admission), nothing created; a refusal raises ``PermanentRuntimeError``."""
        pod = _pod_from_manifest(pod_manifest(spec))
        admitted = await self._call(lambda: self._client.create(pod, dry_run=True))
        return cast(dict[str, Any], admitted.to_dict())

    async def read_manifest(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Pod as the API server holds it (its defaults included), without its status and
        managed fields; None when there is no such Pod."""
        pod = await self._call_unless(404, lambda: self._client.get(Pod, name, namespace=namespace))
        if pod is None:
            return None
        manifest = cast(dict[str, Any], pod.to_dict())
        manifest.pop("status", None)
        manifest.get("metadata", {}).pop("managedFields", None)
        return manifest

    # -- the pool's token Secret ---------------------------------------------------------------

    async def ensure_token_secret(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        """Create or replace ``slotpool-agent-token-<pool_id>`` so that it holds ``token``."""
        existing = await self._get_token_secret(namespace, pool_id)
        if existing is None:
            secret = _token_secret(namespace, pool_id, token, resource_version=None)
            await self._call(lambda: self._client.create(secret), write=True)
            return "created"
        if _holds(existing, pool_id, token):
            return "unchanged"
        # The read's version makes the write conditional: a concurrent change answers 409.
        version = existing.metadata.resourceVersion if existing.metadata else None
        secret = _token_secret(namespace, pool_id, token, resource_version=version)
        await self._call(lambda: self._client.replace(secret), write=True)
        return "updated"

    async def read_token_secret(self, namespace: str, pool_id: str) -> str | None:
        secret = await self._get_token_secret(namespace, pool_id)
        encoded = (secret.data or {}).get(TOKEN_SECRET_KEY) if secret is not None else None
        return base64.b64decode(encoded).decode() if encoded is not None else None

    async def delete_token_secret(self, namespace: str, pool_id: str) -> None:
        name = token_secret_name(pool_id)
        await self._call_unless(
            404, lambda: self._client.delete(Secret, name, namespace=namespace), write=True
        )

    async def _get_token_secret(self, namespace: str, pool_id: str) -> Secret | None:
        name = token_secret_name(pool_id)
        return await self._call_unless(
            404, lambda: self._client.get(Secret, name, namespace=namespace)
        )


# -- helpers ---------------------------------------------------------------------------------------


def runtime_pod(pod: Pod) -> RuntimePod:
    meta = pod.metadata or ObjectMeta()
    status = pod.status or PodStatus()
    reason, message = _diagnosis(status)
    return RuntimePod(
        name=meta.name or "",
        namespace=meta.namespace or "",
        pool_id=(meta.labels or {}).get(POOL_LABEL, ""),
        config_hash=(meta.annotations or {}).get(CONFIG_HASH_ANNOTATION),
        phase=status.phase or "Pending",
        node=pod.spec.nodeName if pod.spec is not None else None,
        reason=reason,
        message=message,
        # RFC 3339 with "Z" from the server, decoded aware; absent only on a Pod never sent.
        created_at=meta.creationTimestamp or datetime.now(UTC),
        deleting=meta.deletionTimestamp is not None,
        ip=status.podIP,
        uid=meta.uid,
    )


def _pool_labels(pool_id: str) -> dict[str, str]:
    """``slotpool.domain.manifest.pool_selector`` as the mapping lightkube takes."""
    return {MANAGED_BY_LABEL: MANAGED_BY, POOL_LABEL: pool_id}


def _selector(pool_id: str | None) -> LabelSelector:
    """The pool's Pods; ``None``: every Pod slotpool manages."""
    if pool_id is None:
        return {MANAGED_BY_LABEL: MANAGED_BY}
    return {**_pool_labels(pool_id)}


async def _collect(items: AsyncIterable[T]) -> list[T]:
    return [item async for item in items]


def _pod_from_manifest(manifest: Mapping[str, Any]) -> Pod:
    """The builder's dict as lightkube's Pod, refusing anything the model would drop or change.

    lightkube's models ignore keys they do not know: such a field would silently never reach the
    cluster (the seed's first bug again), so the round trip must give the manifest back.
    """
    try:
        pod = cast(Pod, Pod.from_dict(dict(manifest)))
    except ValueError as exc:
        raise PermanentRuntimeError(status=None, message=f"not a valid Pod: {exc}") from exc
    lost = _first_difference(manifest, pod.to_dict())
    if lost is not None:
        message = f"the Pod model cannot carry {lost!r} of the manifest"
        raise PermanentRuntimeError(status=None, message=message)
    return pod


def _first_difference(sent: Any, kept: Any, path: str = "") -> str | None:
    if isinstance(sent, Mapping) and isinstance(kept, Mapping):
        for key, value in sent.items():
            found = _first_difference(value, kept.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        for index, (left, right) in enumerate(zip(sent, kept, strict=True)):
            found = _first_difference(left, right, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if sent == kept else path or "<manifest>"


def _diagnosis(status: PodStatus) -> tuple[str | None, str | None]:
    """Why the Pod is not (or no longer) running, in Kubernetes' words; (None, None) if it is."""
    if status.reason:  # the Pod as a whole, e.g. Evicted
        return status.reason, status.message
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return condition.reason, condition.message  # e.g. Unschedulable, "0/3 nodes ..."
    for container in status.containerStatuses or []:
        problem = _container_problem(container)
        if problem is not None:
            return problem
    return None, None


def _container_problem(container: ContainerStatus) -> tuple[str, str | None] | None:
    state = container.state
    if state is None:
        return None
    if state.waiting is not None and state.waiting.reason:  # e.g. ImagePullBackOff
        return state.waiting.reason, state.waiting.message
    if state.terminated is not None:
        ended = state.terminated
        return ended.reason or "Terminated", ended.message or f"exit code {ended.exitCode}"
    return None


def _version_of(pod: Pod) -> str:
    return (pod.metadata.resourceVersion if pod.metadata else None) or ""


def _token_secret(
    namespace: str, pool_id: str, token: str, *, resource_version: str | None
) -> Secret:
    metadata = ObjectMeta(
        name=token_secret_name(pool_id),
        namespace=namespace,
        labels=_pool_labels(pool_id),
        resourceVersion=resource_version,
    )
    data = {TOKEN_SECRET_KEY: base64.b64encode(token.encode()).decode()}
    return Secret(metadata=metadata, type="Opaque", data=data)


def _holds(secret: Secret, pool_id: str, token: str) -> bool:
    encoded = base64.b64encode(token.encode()).decode()
    labels = (secret.metadata.labels if secret.metadata else None) or {}
    has_labels = _pool_labels(pool_id).items() <= labels.items()
    return (secret.data or {}).get(TOKEN_SECRET_KEY) == encoded and has_labels
