"""The application factory: settings in, a FastAPI app out; the store opens and closes with it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from slotpool import __version__
from slotpool.api import errors, ui
from slotpool.api.access import AccessLog
from slotpool.api.deps import Services
from slotpool.api.docs import serve_docs
from slotpool.api.middleware import RequestSizeLimit, SecurityHeaders
from slotpool.api.routes import (
    admin_tokens,
    agent,
    cluster,
    config,
    freeze,
    health,
    history,
    metrics,
    pods,
    pools,
    tasks,
    tokens,
)
from slotpool.clock import utc_now
from slotpool.controller.assembly import PoolController
from slotpool.controller.sweeper import Sweeper
from slotpool.domain.config import PoolType
from slotpool.hardening import private_directory
from slotpool.logs import announce
from slotpool.runtime.agent_python import AgentPythonError, agent_interpreter
from slotpool.runtime.base import PodRuntime, RuntimeRegistry
from slotpool.runtime.kubernetes import KubernetesRuntime
from slotpool.runtime.local import AgentUserError, LocalRuntime, agent_user
from slotpool.services.agents import AgentService
from slotpool.services.auth import AdminAuth
from slotpool.services.cluster import Election
from slotpool.services.deployment import DeploymentService
from slotpool.services.dispatch import Dispatcher
from slotpool.services.events import EventService
from slotpool.services.fencing import fenced
from slotpool.services.freeze import FreezeService
from slotpool.services.history import HistorySampler, HistoryService
from slotpool.services.locks import PoolLocks
from slotpool.services.no_pods import NoPods
from slotpool.services.notify import Notifier
from slotpool.services.pod_drain import PodDrain
from slotpool.services.pool_removal import PoolRemoval
from slotpool.services.pools import PoolService
from slotpool.services.rotation import TokenRotation
from slotpool.services.runtimes import PoolRuntimes
from slotpool.services.secret_tokens import SecretTokens
from slotpool.services.stats import StatsService
from slotpool.services.tasks import TaskService
from slotpool.services.tokens import TokenService
from slotpool.settings import Settings
from slotpool.store.advisory import AdvisoryLocks
from slotpool.store.channel import SignalChannel
from slotpool.store.exclusive import hold_database, release_database
from slotpool.store.uow import Store

LOCAL_OFF = "the local runtime is off in this server (SLOTPOOL_LOCAL_RUNTIME)"
KUBERNETES_OFF = (
    "no Kubernetes cluster is configured in this server: set SLOTPOOL_KUBECONFIG "
    "(or SLOTPOOL_KUBERNETES_IN_CLUSTER=true) and restart"
)


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def announce_admin_token(token: str) -> None:
    """Shown once: only its hash is kept."""
    line = "=" * 72
    announce(
        f"{line}\nslotpool generated the admin token (shown only this once, stored hashed):\n\n"
        f"    {token}\n\nexport SLOTPOOL_ADMIN_TOKEN={token}\n{line}",
        level=logging.WARNING,
    )


def build_runtimes(settings: Settings) -> RuntimeRegistry:
    """The runtime of each pool type the settings turn on; for the others, why there is none."""
    runtimes = RuntimeRegistry()
    if settings.local_runtime:
        runtimes.add(PoolType.local, local_runtime(settings))
    else:
        runtimes.off(PoolType.local, LOCAL_OFF)
    if settings.kubernetes_enabled:
        runtimes.add(PoolType.k8s, kubernetes_runtime(settings))
    else:
        runtimes.off(PoolType.k8s, KUBERNETES_OFF)
    return runtimes


def local_runtime(settings: Settings) -> LocalRuntime:
    try:
        user = agent_user(settings.local_agent_user)
    except AgentUserError as exc:
        raise ValueError(f"SLOTPOOL_LOCAL_AGENT_USER: {exc}") from None
    base = settings.data_dir / "local-runtime"
    python = settings.local_agent_python
    if user is not None:
        try:
            python = agent_interpreter(user.uid, user.gid, python)
        except AgentPythonError as exc:  # every launch fails with the same reason, in the pool
            announce(
                f"slotpool: local agents cannot start as {user.name}: {exc}", level=logging.ERROR
            )
    return LocalRuntime(base, user=user, python=python)


def kubernetes_runtime(settings: Settings) -> KubernetesRuntime:
    return KubernetesRuntime.from_kubeconfig(
        None if settings.kubernetes_in_cluster else settings.kubeconfig,
        requests_per_second=settings.kube_requests_per_second,
        relist_seconds=settings.pod_relist_seconds,
    )


def build_services(
    store: Store,
    settings: Settings,
    clock: Callable[[], datetime],
    runtimes: RuntimeRegistry | None = None,
) -> Services:
    pools = PoolService(store, settings, clock)
    freeze = FreezeService(store, settings, clock)
    tokens = TokenService(store, clock)
    notifier = Notifier()
    store.subscribe(notifier.deliver)  # what a committed unit of work signals wakes its waiters
    dispatcher = Dispatcher(store, pools, clock, freeze)
    notifier.listen(dispatcher.heard)  # a task queued here or elsewhere: its queue is looked at
    # Fenced: the writes of the leader's work are refused once it no longer leads.
    kept = PoolRuntimes(fenced(RuntimeRegistry() if runtimes is None else runtimes), pools)
    no_pods = NoPods(store=store, runtimes=kept, clock=clock)
    locks = PoolLocks(pool_locks_in_database(store, settings))
    secrets = SecretTokens(store=store, tokens=tokens, clock=clock)
    # The controller is the use cases' PoolPasses: built first, handed to them.
    controller = PoolController(
        store=store,
        runtimes=kept,
        pools=pools,
        freeze=freeze,
        secrets=secrets,
        locks=locks,
        notifier=notifier,
        no_pods=no_pods,
        clock=clock,
    )
    return Services(
        auth=AdminAuth(store, settings, clock),
        pools=pools,
        freeze=freeze,
        tokens=tokens,
        tasks=TaskService(store, dispatcher, notifier, clock, no_pods),
        agents=AgentService(
            store=store,
            settings=settings,
            pools=pools,
            tokens=tokens,
            runtimes=kept,
            dispatcher=dispatcher,
            notifier=notifier,
            clock=clock,
        ),
        settings=settings,
        controller=controller,
        stats=StatsService(store, pools, freeze, clock),
        events=EventService(store),
        history=HistoryService(store, settings, clock),
        deployment=DeploymentService(
            pools=pools, runtimes=kept, passes=controller, no_pods=no_pods
        ),
        no_pods=no_pods,
        removal=PoolRemoval(
            store=store, pools=pools, runtimes=kept, locks=locks, passes=controller
        ),
        rotation=TokenRotation(
            pools=pools,
            tokens=tokens,
            runtimes=kept,
            secrets=secrets,
            locks=locks,
            passes=controller,
        ),
        drain=PodDrain(store=store, clock=clock),
        locks=locks,
    )


def pool_locks_in_database(store: Store, settings: Settings) -> AdvisoryLocks | None:
    """On PostgreSQL, a pool's lock is also held in the database (several server processes may
    share it); a holder that stops answering loses it after the leader's lease."""
    if store.backend != "postgresql":
        return None
    return AdvisoryLocks(store.url, hold_seconds=settings.leader_lease_seconds)


async def signal_channel(store: Store, notifier: Notifier) -> SignalChannel | None:
    """On PostgreSQL, committed signals also travel to (and arrive from) the other server
    processes on the database; listening before the server answers anything."""
    if store.backend != "postgresql":
        return None
    channel = SignalChannel(store.url, deliver=notifier.deliver, missed=notifier.wake_all)
    await channel.start()
    store.subscribe(channel.publish)
    return channel


def history_sampler(store: Store, settings: Settings, services: Services) -> HistorySampler | None:
    """The pool history sampler the settings ask for (None: no sampling)."""
    if not settings.history_interval_seconds:
        return None
    return HistorySampler(
        store=store,
        interval=timedelta(seconds=settings.history_interval_seconds),
        desired=services.controller.desired_pods,
    )


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    on_admin_token: Callable[[str], None] = announce_admin_token,
    runtimes: RuntimeRegistry | Mapping[PoolType, PodRuntime] | None = None,
) -> FastAPI:
    """With ``runtimes`` (tests, benchmarks), the app runs its pools' Pods on those instead of
    the runtimes ``settings`` configure; their owner closes them."""
    given = runtimes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One server per SQLite database (this process may hold it already: the CLI's).
        held = hold_database(settings.database_url, url=settings.public_url)
        try:
            async with running(app) as election:
                app.state.cluster = election
                yield
        finally:
            release_database(held)

    @asynccontextmanager
    async def running(app: FastAPI) -> AsyncIterator[Election]:
        private_directory(settings.data_dir)
        # A paused replica's open transaction (and its locks) ends after a lease.
        store = Store(
            settings.database_url, idle_in_transaction_seconds=settings.leader_lease_seconds
        )
        app.state.store = store
        if given is None:
            runtimes = build_runtimes(settings)
        else:
            runtimes = given if isinstance(given, RuntimeRegistry) else RuntimeRegistry(given)
        app.state.services = services = build_services(store, settings, clock, runtimes)
        channel = await signal_channel(store, services.agents.notifier)
        sweeper = Sweeper(
            store=store,
            settings=settings,
            dispatcher=services.agents.dispatcher,
            clock=clock,
            history=history_sampler(store, settings, services),
        )
        token = await app.state.services.auth.ensure_token()
        if token is not None:
            on_admin_token(token)
        controls = bool(runtimes) and settings.pod_sync_seconds > 0

        def leader_work() -> list[Coroutine[Any, Any, None]]:
            """What only the leader runs, anew at each election."""
            work = [sweeper.run_forever()]
            if controls:
                work.append(services.controller.run_forever(settings.pod_sync_seconds))
            return work

        election = Election(
            store=store,
            settings=settings,
            pools=services.pools,
            work=leader_work,
            first_pass=services.controller.first_pass if controls else None,
        )
        services.agents.notifier.listen(election.heard)
        loop = asyncio.get_running_loop()

        def start_nothing_new() -> None:
            for _, runtime in runtimes.items():
                if isinstance(runtime, LocalRuntime):
                    runtime.refuse_new_agents()

        async def hand_over() -> None:
            start_nothing_new()
            try:
                async with asyncio.timeout(settings.leader_lease_seconds):
                    await election.stop()
            except TimeoutError:  # the lease runs out by itself
                announce("slotpool: handing over took too long; stopping", level=logging.ERROR)
            # Long polls answer now, so that the HTTP server's drain is not held up by them.
            services.agents.notifier.close()

        # For the entry point's signal handler: told to stop, the server starts nothing new (no
        # local agent), stops its leader's work and gives up the lease (``Election.stop``), and
        # only then lets the HTTP server close its port and drain (the future's end says when).
        app.state.stopping = lambda: asyncio.run_coroutine_threadsafe(hand_over(), loop)
        try:
            await election.start()
            yield election
        finally:
            start_nothing_new()
            services.agents.notifier.close()
            await election.stop()
            if given is None:  # given runtimes are closed by whoever made them
                await runtimes.close_all()
            if channel is not None:
                await channel.close()
            await services.locks.close()
            await store.close()

    app = FastAPI(
        # FastAPI's own OpenTelemetry looks for configured providers on every request (about
        # 5 us each); slotpool configures none: its metrics are Prometheus' (``/metrics``) and
        # its request lines the access log's.
        telemetry=NO_TELEMETRY,
        title="slotpool",
        version=__version__,
        description="Agent pools whose agents are bare Pods with N task slots.",
        lifespan=lifespan,
        docs_url=None,  # served by serve_docs, on assets this server ships
        redoc_url=None,
    )
    serve_docs(app)
    errors.install(app)
    # The last added runs first: headers on every answer, the 413 included, and an access
    # line for every request, the refused ones included.
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog, mode=settings.access_log)
    routers = (
        health,
        metrics,
        pools,
        config,
        freeze,
        history,
        tokens,
        pods,
        tasks,
        agent,
        admin_tokens,
        cluster,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(pods.sync_router)
    app.include_router(pods.events_router)
    ui.mount(app, settings)
    return app
