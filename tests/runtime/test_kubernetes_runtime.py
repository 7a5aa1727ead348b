"""The Kubernetes runtime against a real API server (etcd, kube-apiserver, scheduler,
controller-manager and kwok's fake nodes): what the controller relies on, as the cluster answers it.

Every test has a pool of its own in one namespace that enforces the restricted Pod Security
standard. Two answers cannot be provoked from this cluster on demand and are made at the HTTP
boundary instead: a 410 Gone on a Pod watch (the watch cache of a fresh API server still holds
every version, so even resourceVersion "1" is served; see ``test_a_watch_that_is_too_old...``)
and the statuses a healthy server never sends (429, 5xx), which are checked at the mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.models.meta_v1 import Status
from lightkube.resources.core_v1 import Secret

from slotpool import metrics
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.leadership import CURRENT, Lease, NotLeader
from slotpool.domain.manifest import PodContext, build_pod_manifest, pod_config_hash
from slotpool.runtime.base import RuntimePod
from slotpool.runtime.errors import (
    PermanentRuntimeError,
    RuntimeApiError,
    TemporaryRuntimeError,
    runtime_error_from,
)
from slotpool.runtime.kubernetes import KubernetesRuntime, PodChange, PodEvent, PodSync, TokenBucket
from tests.support.kube import K8sTestEnv

NAMESPACE = "slotpool-runtime"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
CONTROL_PLANE_URL = "http://slotpool.example:8080"
# What this API server sends on a watch from a compacted resourceVersion (seen on its uncached
# Events watch after an etcd compaction), one line of the watch stream.
EXPIRED = (
    b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},'
    b'"status":"Failure","message":"The resourceVersion for the provided watch is too old.",'
    b'"reason":"Expired","code":410}}\n'
)


@pytest.fixture(scope="module")
async def runtime(k8s: K8sTestEnv) -> AsyncIterator[KubernetesRuntime]:
    runtime = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=500.0)
    await runtime.ensure_namespace(NAMESPACE, labels=RESTRICTED)
    await runtime.ensure_namespace(NAMESPACE, labels=RESTRICTED)  # exists: fine
    await asyncio.to_thread(k8s.wait_for_service_account, NAMESPACE)
    yield runtime
    await runtime.close()
    # Free the fake nodes' CPU for later tests; the namespace controller removes the Pods.
    await asyncio.to_thread(k8s.client.delete, f"/api/v1/namespaces/{NAMESPACE}")


@pytest.fixture
def pool_id() -> str:
    return f"pool-{secrets.token_hex(6)}"


def manifest(pool_id: str, **raw: Any) -> dict[str, Any]:
    config = parse_config({"image": "busybox", **raw}, pool_type=PoolType.k8s)
    return build_pod_manifest(config, context(pool_id))


def context(pool_id: str) -> PodContext:
    return PodContext(pool_id, control_plane_url=CONTROL_PLANE_URL, default_namespace=NAMESPACE)


async def eventually(
    runtime: KubernetesRuntime,
    pool_id: str,
    check: Callable[[list[RuntimePod]], bool],
    seconds: float = 30.0,
) -> list[RuntimePod]:
    async with asyncio.timeout(seconds):
        while True:
            pods, _ = await runtime.list_pods(NAMESPACE, pool_id)
            if check(pods):
                return pods
            await asyncio.sleep(0.2)


async def next_event(
    events: AsyncIterator[PodEvent], check: Callable[[PodEvent], bool]
) -> PodEvent:
    async with asyncio.timeout(30.0):
        async for event in events:
            if check(event):
                return event
    pytest.fail("the watch ended")


def change(kind: str, name: str, phase: str | None = None) -> Callable[[PodEvent], bool]:
    def matches(event: PodEvent) -> bool:
        if not isinstance(event, PodChange) or (event.type, event.pod.name) != (kind, name):
            return False
        return phase is None or event.pod.phase == phase

    return matches


# -- pods ----------------------------------------------------------------------------------------


async def test_created_pods_are_listed_by_label_with_their_hash_and_run_on_a_fake_node(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    raw = {"image": "ghcr.io/acme/agent:1.4", "resources": {"limits": {"cpu": "500m"}}}
    expected_hash = pod_config_hash(parse_config(raw, pool_type=PoolType.k8s), context(pool_id))
    created = [await runtime.create_pod(manifest(pool_id, **raw)) for _ in range(2)]
    await runtime.create_pod(manifest(f"{pool_id}-other", **raw))

    pods, version = await runtime.list_pods(NAMESPACE, pool_id)

    assert version
    assert sorted(p.name for p in pods) == sorted(p.name for p in created)
    assert all(p.name.startswith(f"slotpool-{pool_id}-") for p in pods)
    assert {(p.pool_id, p.namespace, p.config_hash) for p in pods} == {
        (pool_id, NAMESPACE, expected_hash)
    }
    running = await eventually(runtime, pool_id, lambda ps: all(p.phase == "Running" for p in ps))
    for pod in running:
        assert pod.node in k8s.node_names
        assert pod.ip
        assert pod.created_at.tzinfo is not None
        assert (pod.reason, pod.message, pod.deleting) == (None, None, False)


async def test_a_pod_too_big_for_any_node_is_pending_with_the_schedulers_reason(
    runtime: KubernetesRuntime, pool_id: str
) -> None:
    await runtime.create_pod(manifest(pool_id, resources={"requests": {"cpu": "64"}}))

    (pod,) = await eventually(runtime, pool_id, lambda ps: ps[0].reason is not None)

    assert (pod.phase, pod.reason, pod.node) == ("Pending", "Unschedulable", None)
    assert pod.message is not None
    assert "0/3 nodes are available: 3 Insufficient cpu" in pod.message


async def test_a_pod_breaking_the_restricted_standard_is_refused_for_good(
    runtime: KubernetesRuntime, pool_id: str
) -> None:
    bad = manifest(pool_id)
    bad["spec"]["containers"][0]["securityContext"].update(
        privileged=True, allowPrivilegeEscalation=True
    )

    with pytest.raises(PermanentRuntimeError) as refused:
        await runtime.create_pod(bad)

    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in refused.value.message
    assert "privileged" in refused.value.message


async def test_an_invalid_pod_is_refused_with_the_servers_validation_message(
    runtime: KubernetesRuntime, pool_id: str
) -> None:
    bad = manifest(pool_id)
    bad["spec"]["containers"][0]["name"] = "Agent_1"

    with pytest.raises(PermanentRuntimeError) as refused:
        await runtime.create_pod(bad)

    assert refused.value.status == 422
    assert "spec.containers[0].name" in refused.value.message


async def test_a_manifest_field_the_client_model_would_drop_is_refused_before_sending(
    runtime: KubernetesRuntime, pool_id: str
) -> None:
    bad = manifest(pool_id)
    bad["spec"]["containers"][0]["imagePullPolicyy"] = "Always"

    with pytest.raises(PermanentRuntimeError, match=r"spec\.containers\[0\]\.imagePullPolicyy"):
        await runtime.create_pod(bad)

    assert (await runtime.list_pods(NAMESPACE, pool_id))[0] == []


async def test_deleting_twice_is_a_no_op_and_the_pod_disappears(
    runtime: KubernetesRuntime, pool_id: str
) -> None:
    pod = await runtime.create_pod(manifest(pool_id))

    await runtime.delete_pod(NAMESPACE, pod.name)
    await runtime.delete_pod(NAMESPACE, pod.name, grace_seconds=0)

    await eventually(runtime, pool_id, lambda ps: ps == [])
    await runtime.delete_pod(NAMESPACE, pod.name)  # long gone: 404 is success


# -- the token Secret ----------------------------------------------------------------------------


async def test_the_token_secret_is_created_updated_or_left_and_recreated_when_deleted(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets/slotpool-agent-token-{pool_id}"
    assert await runtime.read_token_secret(NAMESPACE, pool_id) is None

    assert await runtime.ensure_token_secret(NAMESPACE, pool_id, "first") == "created"
    assert await runtime.ensure_token_secret(NAMESPACE, pool_id, "first") == "unchanged"
    assert await runtime.read_token_secret(NAMESPACE, pool_id) == "first"
    assert await runtime.ensure_token_secret(NAMESPACE, pool_id, "second") == "updated"
    assert await runtime.read_token_secret(NAMESPACE, pool_id) == "second"

    stored = (await asyncio.to_thread(k8s.client.get, path)).json()
    assert stored["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "slotpool",
        "slotpool.io/pool-id": pool_id,
    }
    assert set(stored["data"]) == {"token"}

    assert (await asyncio.to_thread(k8s.client.delete, path)).status_code == 200
    assert await runtime.read_token_secret(NAMESPACE, pool_id) is None
    assert await runtime.ensure_token_secret(NAMESPACE, pool_id, "third") == "created"
    assert await runtime.read_token_secret(NAMESPACE, pool_id) == "third"

    await runtime.delete_token_secret(NAMESPACE, pool_id)
    await runtime.delete_token_secret(NAMESPACE, pool_id)  # 404: fine
    assert await runtime.read_token_secret(NAMESPACE, pool_id) is None


# -- watching ------------------------------------------------------------------------------------


class Boundary(httpx2.AsyncBaseTransport):
    """The HTTP boundary in front of the real API server: counts Pod lists and watch requests
    and, if asked, answers the first watch as the API server does for a compacted version (with
    ``hold``: once the test releases it); everything else goes on to the real API server."""

    def __init__(
        self, tls: ssl.SSLContext, *, expire: str | None = None, hold: bool = False
    ) -> None:
        self._inner = httpx2.AsyncHTTPTransport(verify=tls)
        self._expire = expire
        self.watches = 0
        self.lists = 0  # of Pods
        self.release = asyncio.Event()  # with ``hold``: the expired answer waits for it
        if not hold:
            self.release.set()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET" and request.url.path.endswith("/pods"):
            self.lists += request.url.params.get("watch") != "true"
        if request.url.params.get("watch") == "true":
            self.watches += 1
            if self.watches == 1 and self._expire is not None:
                await self.release.wait()
                return self._expired()
        return await self._inner.handle_async_request(request)

    def _expired(self) -> httpx2.Response:
        json = {"content-type": "application/json"}
        if self._expire == "error-event":  # how kube-apiserver says it: 200, then an ERROR event
            return httpx2.Response(200, headers=json, content=EXPIRED)
        return httpx2.Response(410, headers=json, content=EXPIRED.split(b'"object":')[1][:-2])

    async def aclose(self) -> None:
        await self._inner.aclose()


def boundary_runtime(k8s: K8sTestEnv, boundary: Boundary) -> KubernetesRuntime:
    client = AsyncClient(KubeConfig.from_file(k8s.kubeconfig), transport=boundary)
    return KubernetesRuntime(client=client, requests_per_second=100.0)


async def test_a_watch_sees_a_pod_added_modified_and_deleted(
    runtime: KubernetesRuntime, pool_id: str
) -> None:
    _, version = await runtime.list_pods(NAMESPACE, pool_id)
    async with contextlib.aclosing(runtime.watch_pods(NAMESPACE, pool_id, version)) as events:
        pod = await runtime.create_pod(manifest(pool_id))
        await next_event(events, change("ADDED", pod.name))
        await next_event(events, change("MODIFIED", pod.name, phase="Running"))
        await runtime.delete_pod(NAMESPACE, pod.name)
        await next_event(events, change("DELETED", pod.name))


async def test_a_watch_without_a_version_starts_with_the_current_pods_and_reopens_itself(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    before = await runtime.create_pod(manifest(pool_id))
    boundary = Boundary(k8s.ssl_context())
    watching = boundary_runtime(k8s, boundary)
    watch = watching.watch_pods(NAMESPACE, pool_id, None, timeout_seconds=1.0)
    try:
        async with contextlib.aclosing(watch) as events:
            first = await anext(events)
            assert isinstance(first, PodSync)
            assert [p.name for p in first.pods] == [before.name]
            added = asyncio.create_task(next_event(events, lambda e: e.type == "ADDED"))
            await asyncio.sleep(1.5)  # the first request's window ends while it waits
            after = await runtime.create_pod(manifest(pool_id))
            event = await added
            assert isinstance(event, PodChange)
            assert event.pod.name == after.name
    finally:
        await watching.close()
    assert boundary.watches == 2


@pytest.mark.parametrize("expire", ["error-event", "http-410"])
async def test_a_watch_that_is_too_old_lists_again_and_carries_on(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str, expire: str
) -> None:
    # On this fresh API server a watch from resourceVersion "1" is served, not refused: the watch
    # cache has never dropped an event, so it replays the whole history. The 410 is made here.
    boundary = Boundary(k8s.ssl_context(), expire=expire)
    gone = await runtime.create_pod(manifest(pool_id))
    _, version = await runtime.list_pods(NAMESPACE, pool_id)
    await runtime.delete_pod(NAMESPACE, gone.name, grace_seconds=0)  # a change missed while away
    kept = await runtime.create_pod(manifest(pool_id))
    expiring = boundary_runtime(k8s, boundary)
    try:
        async with contextlib.aclosing(expiring.watch_pods(NAMESPACE, pool_id, version)) as events:
            sync = await anext(events)
            assert isinstance(sync, PodSync)
            assert [p.name for p in sync.pods] == [kept.name]
            assert int(sync.resource_version) > int(version)
            later = await runtime.create_pod(manifest(pool_id))
            await next_event(events, change("ADDED", later.name))
    finally:
        await expiring.close()
    assert boundary.watches == 2


# -- the rate limit ------------------------------------------------------------------------------


async def test_the_rate_limit_spaces_every_call_even_concurrent_ones(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    calls, rate = 6, 10.0
    limited = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=rate)
    unlimited = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=math.inf)
    loop = asyncio.get_running_loop()

    async def elapsed(subject: KubernetesRuntime) -> float:
        started = loop.time()
        await asyncio.gather(*(subject.list_pods(NAMESPACE, pool_id) for _ in range(calls)))
        return loop.time() - started

    try:
        fast, slow = await elapsed(unlimited), await elapsed(limited)
    finally:
        await limited.close()
        await unlimited.close()
    assert slow >= (calls - 1) / rate
    assert slow > fast


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan])
def test_a_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="requests_per_second"):
        TokenBucket(rate)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentRuntimeError),
        (401, PermanentRuntimeError),
        (403, PermanentRuntimeError),
        (404, PermanentRuntimeError),
        (422, PermanentRuntimeError),
        (408, TemporaryRuntimeError),
        (409, TemporaryRuntimeError),
        (410, TemporaryRuntimeError),
        (429, TemporaryRuntimeError),
        (500, TemporaryRuntimeError),
        (503, TemporaryRuntimeError),
        (504, TemporaryRuntimeError),
    ],
)
def test_statuses_map_to_temporary_or_permanent(status: int, kind: type[Exception]) -> None:
    error = runtime_error_from(ApiError(status=Status(code=status, message="the server's words")))
    assert type(error) is kind
    assert (error.status, error.message) == (status, "the server's words")


async def test_a_conflicting_update_from_the_server_is_temporary(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    await runtime.ensure_token_secret(NAMESPACE, pool_id, "first")
    client = AsyncClient(KubeConfig.from_file(k8s.kubeconfig))
    try:
        stale = await client.get(Secret, f"slotpool-agent-token-{pool_id}", namespace=NAMESPACE)
        await runtime.ensure_token_secret(NAMESPACE, pool_id, "second")
        with pytest.raises(ApiError) as conflict:
            await client.replace(stale)
    finally:
        await client.close()
    error = runtime_error_from(conflict.value)
    assert isinstance(error, TemporaryRuntimeError)
    assert error.status == 409
    assert "the object has been modified" in error.message


@contextlib.contextmanager
def unanswered_port(*, listening: bool) -> Iterator[int]:
    """A port where nobody listens, or where connections are queued but never answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if listening:
            sock.listen(8)
        port: int = sock.getsockname()[1]
        yield port


def silent_runtime(port: int) -> KubernetesRuntime:
    config = KubeConfig.from_one(cluster=Cluster(server=f"http://127.0.0.1:{port}"), user=User())
    client = AsyncClient(config, timeout=httpx2.Timeout(0.5))
    return KubernetesRuntime(client=client, requests_per_second=math.inf)


@pytest.mark.parametrize("listening", [False, True], ids=["refused", "timed-out"])
async def test_an_unreachable_or_silent_server_is_a_temporary_error(listening: bool) -> None:
    with unanswered_port(listening=listening) as port:
        subject = silent_runtime(port)
        try:
            with pytest.raises(TemporaryRuntimeError) as failed:
                await subject.list_pods(NAMESPACE, "pool-x")
        finally:
            await subject.close()
    assert failed.value.status is None
    assert ("timed out" in failed.value.message) is listening


async def test_prepare_makes_a_restricted_namespace_once_and_again_after_it_was_deleted(
    k8s: K8sTestEnv, pool_id: str
) -> None:
    namespace = f"slotpool-prepare-{secrets.token_hex(3)}"
    subject = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=500.0)
    path = f"/api/v1/namespaces/{namespace}"
    try:
        await subject.prepare(namespace)
        labels = (await asyncio.to_thread(k8s.client.get, path)).json()["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        await asyncio.to_thread(k8s.wait_for_service_account, namespace)
        pod = manifest(pool_id, namespace=namespace)
        await subject.create_pod(pod)

        # Deleted behind slotpool's back: creating fails until prepare makes it again.
        await asyncio.to_thread(k8s.client.delete, path)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            with pytest.raises(RuntimeApiError) as refused:
                await subject.create_pod(pod)
            if refused.value.status == 404 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)  # 403 while the namespace is still terminating
        assert refused.value.status == 404
        await subject.prepare(namespace)
        await asyncio.to_thread(k8s.wait_for_service_account, namespace)
        created = await subject.create_pod(pod)
        assert created.namespace == namespace
    finally:
        await subject.close()
        await asyncio.to_thread(k8s.client.delete, path)


# -- the namespace watch's cache of Pods ---------------------------------------------------------


def lists_of_pods() -> float:
    """LIST requests for Pods answered so far, by any runtime of this process."""
    counter = metrics.KUBERNETES_REQUESTS.labels(verb="list", resource="pods", code="200")
    return float(counter._value.get())


@contextlib.asynccontextmanager
async def following(watching: KubernetesRuntime) -> AsyncIterator[list[str]]:
    """``watch_pools`` consumed in the background, as the controller does; yields the pools it
    reported (until the block ends)."""
    heard: list[str] = []

    async def consume() -> None:
        async for pool_id in watching.watch_pools(NAMESPACE):
            heard.append(pool_id)

    task = asyncio.create_task(consume())
    try:
        async with asyncio.timeout(30.0):
            while True:
                if watching.cache(NAMESPACE).following:
                    break
                await asyncio.sleep(0.05)
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cached_until(
    watching: KubernetesRuntime, pool_id: str, check: Callable[[set[str]], bool]
) -> set[str]:
    async with asyncio.timeout(30.0):
        while True:
            names = {p.name for p in await watching.pods(NAMESPACE, pool_id)}
            if check(names):
                return names
            await asyncio.sleep(0.05)


async def test_the_watch_keeps_the_namespaces_pods_and_a_pass_reads_them_without_a_list(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    before = await runtime.create_pod(manifest(pool_id))
    watching = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=100.0)
    try:
        async with following(watching) as heard:
            assert pool_id in heard  # the first listing reports every pool with Pods
            lists = lists_of_pods()
            assert [p.name for p in await watching.pods(NAMESPACE, pool_id)] == [before.name]
            # Created elsewhere (another process, by hand): the watch reports it.
            other = await runtime.create_pod(manifest(pool_id))
            await cached_until(watching, pool_id, lambda names: names == {before.name, other.name})
            # Created here: counted at once, before the watch reports it.
            mine = await watching.create_pod(manifest(pool_id))
            assert mine.name in {p.name for p in await watching.pods(NAMESPACE, pool_id)}
            # Deleted elsewhere: gone once the watch says so.
            await runtime.delete_pod(NAMESPACE, before.name, grace_seconds=0)
            await cached_until(watching, pool_id, lambda names: before.name not in names)
            # Deleted here: going at once.
            await watching.delete_pod(NAMESPACE, other.name, grace_seconds=0)
            cached = {p.name: p for p in await watching.pods(NAMESPACE, pool_id)}
            assert other.name not in cached or cached[other.name].deleting
            await cached_until(watching, pool_id, lambda names: names == {mine.name})
            assert lists_of_pods() == lists  # every answer above came from the cache
            fresh = await watching.pods(NAMESPACE, pool_id, fresh=True)
            assert [p.name for p in fresh] == [mine.name]
            assert lists_of_pods() == lists + 1
        assert not watching.cache(NAMESPACE).following  # the watch ended: lists again
        await watching.pods(NAMESPACE, pool_id)
        assert lists_of_pods() == lists + 2
    finally:
        await watching.close()


async def test_after_a_410_the_cache_is_what_the_new_listing_says(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    gone = await runtime.create_pod(manifest(pool_id))
    boundary = Boundary(k8s.ssl_context(), expire="http-410", hold=True)
    watching = boundary_runtime(k8s, boundary)
    try:
        async with following(watching):
            assert {p.name for p in await watching.pods(NAMESPACE, pool_id)} == {gone.name}
            # While the watch is away (its first request is held, then answered 410), one Pod
            # goes and another comes: no event says so, only the listing after the 410.
            await runtime.delete_pod(NAMESPACE, gone.name, grace_seconds=0)
            await eventually(runtime, pool_id, lambda pods: not pods)
            kept = await runtime.create_pod(manifest(pool_id))
            lists = boundary.lists
            boundary.release.set()
            await cached_until(watching, pool_id, lambda names: names == {kept.name})
            later = await runtime.create_pod(manifest(pool_id))  # and it watches on
            await cached_until(watching, pool_id, lambda names: names == {kept.name, later.name})
            assert boundary.lists == lists + 1  # the listing after the 410; the rest: cached
    finally:
        await watching.close()
    assert boundary.watches == 2


async def test_the_watch_lists_again_every_relist_interval(
    runtime: KubernetesRuntime, pool_id: str
) -> None:
    pod = await runtime.create_pod(manifest(pool_id))
    watch = runtime.watch_pods(NAMESPACE, pool_id, None, relist_seconds=1.0)
    async with contextlib.aclosing(watch) as events:
        syncs = 0
        async with asyncio.timeout(30.0):
            async for event in events:
                if isinstance(event, PodSync):
                    assert [p.name for p in event.pods] == [pod.name]
                    syncs += 1
                    if syncs == 3:
                        break


async def test_a_write_of_a_leader_whose_lease_ran_out_while_it_waited_its_turn_is_not_sent(
    k8s: K8sTestEnv, runtime: KubernetesRuntime, pool_id: str
) -> None:
    """The lease is checked again once the rate limit lets a write go: a leader paused (or
    slow) while its creations waited their turn sends none of them after its lease ran out."""
    slow = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=2.0)
    now = [0.0]
    lease = Lease("replica-a", term=1, deadline=10.0, monotonic=lambda: now[0])

    async def as_leader() -> list[RuntimePod | BaseException]:
        token = CURRENT.set(lease)
        try:
            creations = [asyncio.create_task(slow.create_pod(manifest(pool_id))) for _ in range(4)]
            await asyncio.sleep(0.2)  # the first went; the others wait for the rate limit
            now[0] = 11.0  # the lease runs out meanwhile
            return await asyncio.gather(*creations, return_exceptions=True)
        finally:
            CURRENT.reset(token)

    try:
        results = await as_leader()
    finally:
        await slow.close()
    created = [r for r in results if isinstance(r, RuntimePod)]
    refused = [r for r in results if isinstance(r, NotLeader)]
    assert len(created) >= 1, results
    assert len(created) + len(refused) == 4, results
    assert refused, "the creations still waiting were not sent"
    pods, _ = await runtime.list_pods(NAMESPACE, pool_id)
    assert sorted(p.name for p in pods) == sorted(p.name for p in created)
