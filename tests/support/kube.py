"""A real Kubernetes control plane for the tests and the benchmarks, made of local processes.

``K8sTestEnv.start(base_dir, bin_dir)`` creates certificates in ``base_dir`` and starts etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok (which plays the kubelet for fake
Nodes), all on random free ports of 127.0.0.1; it then creates three fake Nodes (4 CPU, 16Gi,
110 pods) and returns once they are Ready. ``kubeconfig`` authenticates as a cluster admin with a
client certificate. ``stop()`` stops every process by its own pid and removes ``base_dir``; a
failure during ``start`` stops what was started and keeps ``base_dir`` (logs in ``logs/``).

The binaries and certificates: ``kube_build``; the command line of ``scripts/k8s-testenv``:
``kube_cli``; the agents of the Pods: ``kubelet``.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.kube_build import (
    BINARIES,
    SERVICE_CIDR,
    K8sTestEnvError,
    K8sTestEnvUnavailableError,
    bin_dir,
    fake_node,
    make_pki,
    node_name,
    pinned_versions,
)
from tests.support.ports import free_port
from tests.support.processes import Started, stop_all

__all__ = [
    "BINARIES",
    "STATE_FILE",
    "K8sTestEnv",
    "K8sTestEnvError",
    "K8sTestEnvUnavailableError",
    "bin_dir",
    "pinned_versions",
]

STATE_FILE = "state.json"
NODE_COUNT = 3
NODE_LABEL_SELECTOR = "type=kwok"
POD_CIDR = "10.244.0.1/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

_NOT_READY_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})
_START_ATTEMPTS = 3  # a free port may be taken between probing and binding it
_STOP_TIMEOUT = 20.0


# -- the environment -----------------------------------------------------------------------------


class K8sTestEnv:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1."""

    def __init__(self, base_dir: Path, bin_dir: Path) -> None:
        self.base_dir = base_dir
        self.bin_dir = bin_dir
        self.kubeconfig = base_dir / "kubeconfig"
        self.server = ""  # https://127.0.0.1:<port>, set once the API server runs
        self.node_names: list[str] = []
        self._processes: list[Started] = []
        self._ports: dict[str, int] = {}
        self._client: httpx.Client | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def start(cls, base_dir: Path, bin_dir: Path, *, keep_running: bool = False) -> K8sTestEnv:
        """Start everything in ``base_dir`` (created; must be new, empty, or a stopped env's).

        Unless ``keep_running``, the processes are also stopped when the interpreter exits.
        """
        base_dir = base_dir.resolve()
        bin_dir = bin_dir.resolve()
        missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
        if missing:
            raise K8sTestEnvUnavailableError(f"{bin_dir} lacks {', '.join(missing)}")
        _prepare_dir(base_dir)
        env = cls(base_dir, bin_dir)
        if not keep_running:
            atexit.register(env.stop)
        try:
            env._start_all()
        except BaseException:
            atexit.unregister(env.stop)
            env._stopped = True
            env._close_client()
            stop_all(reversed(env._processes), timeout=_STOP_TIMEOUT)
            raise
        return env

    @classmethod
    def attach(cls, base_dir: Path) -> K8sTestEnv:
        """The environment recorded in ``base_dir/state.json`` (by a ``start`` elsewhere)."""
        base_dir = base_dir.resolve()
        try:
            state = json.loads((base_dir / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise K8sTestEnvError(f"no test environment in {base_dir}: {exc}") from None
        env = cls(base_dir, Path(state["bin_dir"]))
        env.server = state["server"]
        env.node_names = list(state["nodes"])
        env._ports = dict(state["ports"])
        env._processes = [
            Started(p["name"], int(p["pid"]), int(p["start_time"])) for p in state["processes"]
        ]
        return env

    def stop(self, *, remove: bool = True) -> None:
        """Stop every process by its pid (SIGTERM, then SIGKILL), then remove ``base_dir``."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        self._close_client()
        by_name = {p.name: p for p in self._processes}
        # Clients first, then the API server, then its storage.
        for names in (("kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",)):
            stop_all(
                [by_name.pop(name) for name in names if name in by_name], timeout=_STOP_TIMEOUT
            )
        stop_all(by_name.values(), timeout=_STOP_TIMEOUT)
        if remove:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def processes(self) -> list[tuple[str, int, bool]]:
        """(name, pid, alive) of every process started, in start order."""
        return [(p.name, p.pid, p.alive()) for p in self._processes]

    def running(self) -> bool:
        """Every component is alive (does not ask the API server)."""
        return len(self._processes) == len(BINARIES) and all(p.alive() for p in self._processes)

    # -- talking to the API server ----------------------------------------------------------------

    @property
    def pki_dir(self) -> Path:
        return self.base_dir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def client_cert(self) -> tuple[Path, Path]:
        """(certificate, key) of the admin user (group ``system:masters``)."""
        return self.pki_dir / "admin.crt", self.pki_dir / "admin.key"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the test CA and presents the admin client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        cert, key = self.client_cert
        context.load_cert_chain(str(cert), str(key))
        return context

    @property
    def client(self) -> httpx.Client:
        """An ``httpx.Client`` on the API server, authenticated as admin."""
        if self._client is None:
            if not self.server:
                raise K8sTestEnvError("the API server is not started")
            self._client = httpx.Client(
                base_url=self.server, verify=self.ssl_context(), timeout=30.0
            )
        return self._client

    def ready(self) -> bool:
        """The API server answers ``/readyz`` with ok."""
        try:
            response = self.client.get("/readyz", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.text.strip() == "ok"

    def wait_for_service_account(
        self, namespace: str, name: str = "default", timeout: float = 60.0
    ) -> None:
        """Wait until the controller-manager created ``name`` in ``namespace``."""
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
        self._wait(
            f"service account {namespace}/{name}",
            lambda: self.client.get(path).status_code == 200,
            timeout,
        )

    def wait_for_nodes_ready(self, timeout: float = 90.0) -> None:
        """Wait until every fake Node is Ready and carries no not-ready/unreachable taint."""
        self._wait(f"{len(self.node_names)} Ready fake nodes", self._nodes_ready, timeout)

    # -- start ----------------------------------------------------------------------------------

    @property
    def _logs(self) -> Path:
        return self.base_dir / "logs"

    def _start_all(self) -> None:
        self._logs.mkdir(parents=True, exist_ok=True)
        self._save_state()  # marks the directory as ours, for `down` after a failed start
        make_pki(self.pki_dir)
        self._retry_on_port_clash(self._start_etcd)
        self._retry_on_port_clash(self._start_apiserver)
        self._write_kubeconfig()
        self._start_controllers()
        self._create_nodes()
        self.wait_for_nodes_ready()
        self._save_state()

    def _retry_on_port_clash(self, start: Callable[[], Started]) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                start()
                return
            except K8sTestEnvError as exc:
                process = self._processes[-1] if self._processes else None
                clash = "address already in use" in str(exc)
                if process is None or process.alive() or not clash or attempt == _START_ATTEMPTS:
                    raise
                self._processes.pop()
                self._save_state()

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Started:
        log = self._logs / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                env=env,
                start_new_session=True,  # detached: survives the starter, no terminal signals
            )
        process = Started.of(name, popen.pid, popen)
        self._processes.append(process)
        (self.base_dir / f"{name}.pid").write_text(f"{popen.pid}\n")
        self._save_state()
        return process

    def _save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "ports": self._ports,
            "nodes": self.node_names,
            "processes": [_as_json(p) for p in self._processes],
        }
        tmp = self.base_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.base_dir / STATE_FILE)

    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check`` until true; fail early, with its log, if a component exits."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while True:
            for process in self._processes:
                if not process.alive():
                    raise K8sTestEnvError(
                        f"{process.name} (pid {process.pid}) exited while waiting for {what}:\n"
                        f"{self._log_tail(process.name)}"
                    )
            try:
                if check():
                    return
            except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                last_error = f" (last error: {exc!r})"
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- {p.name} ---\n{self._log_tail(p.name, 15)}" for p in self._processes
                )
                raise K8sTestEnvError(
                    f"timed out after {timeout:.0f}s waiting for {what}{last_error}\n{tails}"
                )
            time.sleep(0.2)

    def _log_tail(self, name: str, lines: int = 40) -> str:
        try:
            text = (self._logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _start_etcd(self) -> Started:
        taken = set(self._ports.values())
        client, peer = free_port(taken), free_port(taken)
        self._ports.update({"etcd-client": client, "etcd-peer": peer})
        data = self.base_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        process = self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=slotpool-test",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=slotpool-test=http://127.0.0.1:{peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            response = httpx.get(f"http://127.0.0.1:{client}/health", timeout=2.0)
            return response.status_code == 200 and response.json().get("health") == "true"

        self._wait("etcd /health", healthy, 60.0)
        return process

    def _start_apiserver(self) -> Started:
        port = free_port(set(self._ports.values()))
        self._ports["kube-apiserver"] = port
        self.server = f"https://127.0.0.1:{port}"
        self._close_client()
        pki = self.pki_dir
        process = self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self._ports['etcd-client']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.base_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca_file}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                # Privileged Pods pass API validation, so Pod Security admission is what refuses
                # them in a restricted namespace (403), as on a real cluster.
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )

        def ready() -> bool:
            return self.ready() and self.client.get("/api/v1/namespaces/default").is_success

        self._wait("kube-apiserver /readyz and the default namespace", ready, 120.0)
        return process

    def _write_kubeconfig(self) -> None:
        cert, key = self.client_cert
        user = {"client-certificate": str(cert), "client-key": str(key)}
        _write_kubeconfig(self.kubeconfig, self.server, self.ca_file, "slotpool-test-admin", user)

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, seconds: int = 3600
    ) -> Path:
        """A kubeconfig at ``path`` that authenticates as the ServiceAccount ``namespace/name``
        with a token from the TokenRequest API (as a Pod's projected token; ``seconds`` valid),
        so a process run outside the cluster has exactly that account's rights."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        response = self.client.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json=request
        )
        _raise_for_status(response, f"token request for {namespace}/{name}")
        token = response.json()["status"]["token"]
        user_name = f"system:serviceaccount:{namespace}:{name}"
        _write_kubeconfig(path, self.server, self.ca_file, user_name, {"token": token})
        return path

    def _start_controllers(self) -> None:
        pki = self.pki_dir
        kubeconfig = str(self.kubeconfig)
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            "--leader-elect=false",
            "--profiling=false",
        ]
        taken = set(self._ports.values())
        manager_port, scheduler_port = free_port(taken), free_port(taken)
        self._ports.update(
            {"kube-controller-manager": manager_port, "kube-scheduler": scheduler_port}
        )
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                *common,
                f"--secure-port={manager_port}",
                f"--root-ca-file={self.ca_file}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--cluster-signing-cert-file={self.ca_file}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                *common,
                f"--secure-port={scheduler_port}",
            ],
        )
        # kwok reads ~/.kwok/kwok.yaml and KWOK_* variables: keep the developer's out of it.
        kwok_home = self.base_dir / "kwok-home"
        kwok_home.mkdir(exist_ok=True)
        kwok_env = {k: v for k, v in os.environ.items() if not k.startswith("KWOK_")}
        kwok_env["HOME"] = str(kwok_home)
        self._spawn(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=true",
                f"--cidr={POD_CIDR}",
            ],
            env=kwok_env,
        )
        with httpx.Client(verify=self.ssl_context(), timeout=5.0) as probe:
            for name, port in (
                ("kube-controller-manager", manager_port),
                ("kube-scheduler", scheduler_port),
            ):
                url = f"https://127.0.0.1:{port}/healthz"
                self._wait(f"{name} {url}", functools.partial(_get_ok, probe, url), 90.0)

    def _create_nodes(self) -> None:
        self.node_names = [node_name(index) for index in range(NODE_COUNT)]
        for index, name in enumerate(self.node_names):
            response = self.client.post("/api/v1/nodes", json=fake_node(index))
            if response.status_code != 409:
                _raise_for_status(response, f"create node {name}")
        self._save_state()

    def _nodes_ready(self) -> bool:
        response = self.client.get("/api/v1/nodes", params={"labelSelector": NODE_LABEL_SELECTOR})
        _raise_for_status(response, "list nodes")
        ready = set()
        for node in response.json()["items"]:
            conditions = node.get("status", {}).get("conditions") or []
            taints = node.get("spec", {}).get("taints") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and not any(
                t["key"] in _NOT_READY_TAINTS for t in taints
            ):
                ready.add(node["metadata"]["name"])
        return ready >= set(self.node_names)

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _write_kubeconfig(
    path: Path, server: str, ca_file: Path, user_name: str, user: dict[str, str]
) -> None:
    """A kubeconfig (mode 0600) of one cluster, ``server`` trusted by ``ca_file``, and one user."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "slotpool-test",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [
            {"name": "slotpool-test", "context": {"cluster": "slotpool-test", "user": user_name}}
        ],
        "current-context": "slotpool-test",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _as_json(process: Started) -> dict[str, Any]:
    return {"name": process.name, "pid": process.pid, "start_time": process.start_time}


def _get_ok(client: httpx.Client, url: str) -> bool:
    response = client.get(url)
    return response.status_code == 200 and response.text.strip() == "ok"


def _raise_for_status(response: httpx.Response, what: str) -> None:
    if not response.is_success:
        raise K8sTestEnvError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


def _prepare_dir(base_dir: Path) -> None:
    """Create ``base_dir``, or clear it if it holds a stopped environment; refuse anything else."""
    if base_dir.exists():
        if (base_dir / STATE_FILE).exists():
            previous = K8sTestEnv.attach(base_dir)
            if any(alive for _, _, alive in previous.processes()):
                raise K8sTestEnvError(f"a test environment is running in {base_dir}; stop it first")
            shutil.rmtree(base_dir)
        elif any(base_dir.iterdir()):
            raise K8sTestEnvError(f"{base_dir} is not empty and holds no test environment")
    base_dir.mkdir(parents=True, exist_ok=True)
