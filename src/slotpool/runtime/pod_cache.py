"""The Pods of one namespace as a watch follows them, so that a controller pass reads memory rather
than asking the API server for a list.

The watch fills it: a listing replaces it (the first one, one after a 410 Gone, and one every
``pod_relist_seconds`` against a missed event), each change after it adds, changes or removes one
Pod. Between a creation and the watch's report of it, the creating process already knows the Pod
(``created``): a pass must count it, or it would create it again, and a listing that began before
the creation does not drop it. It is only trusted while its watch runs (``following``): before the
first listing and after the watch failed, the runtime lists as before.

What it can get wrong is bounded: a change the watch has not delivered yet is seen a moment later
(as a list would have been a moment earlier), and a recorded Pod it does not hold is not taken for
gone on its word (the controller confirms with a real listing first, ``PodRuntime.pods(fresh=)``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace

from slotpool.runtime.base import RuntimePod


class PodCache:
    """One namespace's Pods by pool (see the module's docstring)."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._pods: defaultdict[str, dict[str, RuntimePod]] = defaultdict(dict)
        # Created by this process and not reported yet: the Pod and when its creation answered.
        self._created: dict[str, tuple[RuntimePod, float]] = {}
        self.following = False

    def replace(self, pods: Iterable[RuntimePod], *, listed_at: float) -> None:
        """A listing that began at ``listed_at`` (monotonic): it holds every Pod there was then.
        Pods created here after it began and missing from it are kept."""
        self._pods = defaultdict(dict)
        for pod in pods:
            self._pods[pod.pool_id][pod.name] = pod
        self._created = {
            name: (pod, at)
            for name, (pod, at) in self._created.items()
            if at > listed_at and name not in self._pods[pod.pool_id]
        }
        self.following = True

    def change(self, kind: str, pod: RuntimePod) -> None:
        """The watch reported ``pod`` ADDED, MODIFIED or DELETED."""
        self._created.pop(pod.name, None)
        if kind == "DELETED":
            self._pods[pod.pool_id].pop(pod.name, None)
        else:
            self._pods[pod.pool_id][pod.name] = pod

    def created(self, pod: RuntimePod) -> None:
        """This process created ``pod`` (the API server's answer): counted until reported."""
        if pod.name not in self._pods[pod.pool_id]:
            self._created[pod.name] = (pod, self._monotonic())

    def deleting(self, name: str) -> None:
        """This process asked to delete the Pod ``name``: it is going, as a listing would say."""
        if name in self._created:
            pod, at = self._created[name]
            self._created[name] = (replace(pod, deleting=True), at)
            return
        for pods in self._pods.values():
            if name in pods:
                pods[name] = replace(pods[name], deleting=True)
                return

    def stopped(self) -> None:
        """The watch ended: until a listing refills it, nothing here is trusted."""
        self.following = False

    def pool(self, pool_id: str) -> list[RuntimePod]:
        """The pool's Pods as last reported, with those created here since."""
        known = self._pods.get(pool_id, {})
        created = [pod for pod, _ in self._created.values() if pod.pool_id == pool_id]
        return [*known.values(), *(pod for pod in created if pod.name not in known)]
