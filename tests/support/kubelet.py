"""A stand-in for the container runtime of the test cluster's fake Nodes.

kwok plays the kubelet: it marks scheduled Pods Running but runs nothing. ``AgentKubelet`` adds
the missing half for slotpool's Pods: when one of them is Running it starts the agent the Pod's
container would run (``python -m slotpool.agent``) on this host, with the Pod's environment as
Kubernetes would resolve it (``fieldRef: metadata.name`` and ``metadata.uid`` are the Pod's name
and UID as the API server has them, ``secretKeyRef`` is read from the Secret there), and when
the Pod is deleted or gone it stops the agent (SIGTERM, then SIGKILL after the grace), as a
kubelet does. Tasks then run through the real API server, the real Secret and the real agent
protocol.

A container is every process its agent started (the steps run in sessions of their own): like
a kubelet ending a container's cgroup, the processes left when the agent has exited or is
killed are killed too, so a test's agent leaves nothing behind.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.core_v1 import Pod, Secret

from tests.support import processes

SELECTOR: dict[str, Any] = {"app.kubernetes.io/managed-by": "slotpool"}
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 10.0


@dataclass
class Container:
    pod: str
    namespace: str
    process: subprocess.Popen[bytes]
    log: Path
    stopping_since: float | None = None
    # Its processes as last seen: what is left of them is killed once the agent is gone.
    members: list[processes.Started] = field(default_factory=list)

    def end(self) -> None:
        """SIGKILL the agent and every process of the container."""
        running = self.process.poll() is None  # once reaped, its pid may be another's
        now = processes.tree([self.process.pid]) if running else []
        processes.kill_all([*self.members, *now])
        self.process.wait(timeout=10)


@dataclass
class AgentKubelet:
    kubeconfig: Path
    work_dir: Path
    # Only the Pods of this namespace ("*": all), so Pods left by other tests get no agents.
    namespace: str = "*"
    running: dict[str, Container] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._client = Client(KubeConfig.from_file(self.kubeconfig), field_manager="test-kubelet")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="agent-kubelet", daemon=True)

    def __enter__(self) -> AgentKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for container in self.running.values():
                container.end()
            self.running.clear()

    def agent_of(self, pod: str) -> Container | None:
        with self._lock:
            return self.running.get(pod)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # kept for the test to see; the loop goes on
                self.errors.append(repr(exc))
            self._stop.wait(POLL_SECONDS)

    def _step(self) -> None:
        pods = {
            (p.metadata.namespace or "", p.metadata.name or ""): p
            for p in self._client.list(Pod, namespace=self.namespace, labels=SELECTOR)
            if p.metadata is not None
        }
        with self._lock:
            by_parent = processes.parents()
            for name, container in list(self.running.items()):
                found = pods.get((container.namespace, name))
                meta = found.metadata if found is not None else None
                if container.process.poll() is not None:
                    container.end()  # its agent exited: so does what it left running
                    del self.running[name]
                    continue
                container.members = processes.tree([container.process.pid], by_parent)
                if meta is None or meta.deletionTimestamp is not None:
                    self._stop_container(container)
            for (namespace, name), pod in pods.items():
                phase = pod.status.phase if pod.status is not None else None
                deleting = pod.metadata is not None and pod.metadata.deletionTimestamp is not None
                if phase == "Running" and not deleting and name not in self.started:
                    started = self._start(namespace, name, pod)
                    if started is not None:
                        self.running[name] = started
                        self.started.append(name)

    def _stop_container(self, container: Container) -> None:
        now = time.monotonic()
        if container.stopping_since is None:
            container.stopping_since = now
            _signal(container.process, signal.SIGTERM)
        elif now - container.stopping_since > STOP_GRACE_SECONDS:
            container.end()

    def _start(self, namespace: str, name: str, pod: Pod) -> Container | None:
        assert pod.spec is not None
        spec = pod.spec.containers[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
        for entry in spec.env or []:
            value = self._resolve(namespace, pod, entry.to_dict())
            if value is None:
                return None  # like CreateContainerConfigError: tried again next time
            env[entry.name] = value
        env["SLOTPOOL_WORK_DIR"] = str(self.work_dir / name)
        env["SLOTPOOL_DRAIN_GRACE_SECONDS"] = "5"
        # In the Pod, agent and steps share a non-root user without CAP_SYS_PTRACE, and the
        # agent being non-dumpable is what keeps steps out of it; here the agent runs as root:
        # its steps run as root too, as in the container as its user (and reach the test's files).
        env["SLOTPOOL_STEP_USER"] = "none"
        log = self.work_dir / f"{name}.log"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "slotpool.agent"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return Container(name, namespace, process, log)

    def _resolve(self, namespace: str, pod: Pod, entry: dict[str, Any]) -> str | None:
        if "value" in entry:
            return str(entry["value"])
        source = entry.get("valueFrom", {})
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            assert pod.metadata is not None
            if path == "metadata.name":
                return pod.metadata.name
            if path == "metadata.namespace":
                return namespace
            if path == "metadata.uid":
                return pod.metadata.uid
            raise ValueError(f"the test kubelet does not resolve fieldRef {path}")
        ref = source["secretKeyRef"]
        try:
            secret = self._client.get(Secret, ref["name"], namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        encoded = (secret.data or {}).get(ref["key"])
        return None if encoded is None else base64.b64decode(encoded).decode()


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
