"""Who an agent is: when a pool's token may register an agent, and the credential it then gets.

A pool's token is shared by every agent of the pool (it sits in the pool's Secret), so it cannot
tell one agent from another. It therefore does one thing only: register an agent that is not
registered yet, and in pools whose pods slotpool launches (``k8s``, ``local``) only one that
proves slotpool launched it for that pool, by the pod's **uid**:

* Kubernetes: the Pod's UID as the API server reports it (the agent reads it through the
  downward API); slotpool keeps the UID of every Pod it creates or lists.
* local: a random launch secret the local runtime hands the agent process it starts (its only
  copy outside the server).

The first registration binds a **credential** to that agent alone: the agent makes it at start
(random, in its memory only) and sends it along; slotpool keeps its SHA-256, like the tokens'.
Every later call of the agent shows it as bearer, never the pool token, and reaches only that
agent's pod, slots, tasks and running steps; a reconnecting agent registers again with it and
keeps its pod. (Made by the agent rather than handed out in the answer: a registration whose
answer was lost is simply sent again with the same credential, and is the same registration.)

Static agents are started by hand and nothing proves them: the token registers a name no live
agent holds (a new one, or one whose agent went silent).

Pure: the rules and their words; the services apply them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from slotpool.domain.config import PoolType
from slotpool.domain.pods import Pod, PodState
from slotpool.domain.tokens import token_digest

CREDENTIAL_PREFIX = "spa_"
_ALIVE = (PodState.ready, PodState.draining)


def uid_digest(uid: str) -> str:
    """What the books keep of a pod's uid (a local pod's is a secret)."""
    return token_digest(uid)


def kept_uid(uid: str | None) -> str | None:
    """What the books keep of the uid a runtime reports, if it reports one."""
    return None if uid is None else uid_digest(uid)


class Refused(StrEnum):
    forbidden = "forbidden"  # 403: not this caller, ever
    conflict = "conflict"  # 409: not now; the message says what would do


@dataclass(frozen=True)
class Refusal:
    kind: Refused
    message: str


def refuse_first_registration(
    pod: Pod | None,
    *,
    pool_type: PoolType,
    pool_id: str,
    name: str,
    uid: str | None,
    now: datetime,
    agent_timeout: timedelta,
) -> Refusal | None:
    """Why the pool token may not register agent ``name`` (None: it may). ``pod`` is the
    pool's record of that name, ``uid`` what the agent sent as its pod's uid."""
    if pool_type is PoolType.static:
        return _static_name_taken(pod, pool_id=pool_id, name=name, now=now, timeout=agent_timeout)
    if pod is None:
        return Refusal(
            Refused.forbidden,
            f"slotpool launched no pod named {name} in {pool_id}: the pool token registers "
            "only an agent slotpool started for the pool",
        )
    if not uid:
        return Refusal(
            Refused.forbidden,
            f"pod {name} of {pool_id} proves itself with its uid: register with pod_uid "
            "(the agent sends SLOTPOOL_POD_UID, set by slotpool when it starts the pod)",
        )
    if pod.uid_digest is None or not hmac.compare_digest(pod.uid_digest, uid_digest(uid)):
        return Refusal(
            Refused.forbidden, f"pod_uid is not the uid of pod {name} that slotpool launched"
        )
    if pod.has_credential:
        return Refusal(
            Refused.conflict,
            f"pod {name} of {pool_id} has a registered agent already: only that agent registers "
            "it again, with its own credential (the pool token alone does not)",
        )
    if pod.state in (PodState.terminating, PodState.failed):
        return Refusal(Refused.conflict, f"pod {name} is {pod.state}: it takes no agent")
    return None


def _static_name_taken(
    pod: Pod | None, *, pool_id: str, name: str, now: datetime, timeout: timedelta
) -> Refusal | None:
    if pod is None or not alive(pod, now=now, timeout=timeout):
        return None
    assert pod.last_heartbeat_at is not None  # alive
    heard = int((now - pod.last_heartbeat_at).total_seconds())
    return Refusal(
        Refused.conflict,
        f"agent {name} of {pool_id} is registered and alive (heard from {heard} s ago): start "
        f"this agent under another name, or stop the other one; a name is free again "
        f"{int(timeout.total_seconds())} s after its agent's last heartbeat",
    )


def alive(pod: Pod, *, now: datetime, timeout: timedelta) -> bool:
    """Whether the pod's agent registered and was heard from within ``timeout``."""
    heard = pod.last_heartbeat_at
    return pod.state in _ALIVE and heard is not None and heard >= now - timeout
