"""A real Kubernetes control plane for the tests, made of local processes.

``K8sTestEnv.start(base_dir, bin_dir)`` creates certificates in ``base_dir`` and starts etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok (which plays the kubelet for fake
Nodes), all on random free ports of 127.0.0.1; it then creates three fake Nodes (4 CPU, 16Gi,
110 pods) and returns once they are Ready. ``kubeconfig`` authenticates as a cluster admin with a
client certificate. ``stop()`` stops every process by its own pid and removes ``base_dir``; a
failure during ``start`` stops what was started and keeps ``base_dir`` (logs in ``logs/``).

The binaries are built by ``scripts/k8s-testenv build`` into a per-machine cache; ``bin_dir()``
finds them. ``scripts/k8s-testenv up|down|status`` drive this module's command line
(``python -m tests.k8s_env up DIR --bin-dir BIN``), which leaves the cluster running detached and
records the pids in ``DIR/state.json``.

Environment: ``SLOTPOOL_K8S_CACHE`` is the cache root (default ``~/.cache/slotpool/k8s``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

CACHE_ENV = "SLOTPOOL_K8S_CACHE"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "k8s-testenv"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
STATE_FILE = "state.json"

NODE_COUNT = 3
NODE_CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110"}
NODE_LABEL_SELECTOR = "type=kwok"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` Service
POD_CIDR = "10.244.0.1/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

_NOT_READY_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})
_START_ATTEMPTS = 3  # a free port may be taken between probing and binding it
_STOP_TIMEOUT = 20.0
_OPENSSL_TIMEOUT = 60.0


class K8sTestEnvError(Exception):
    """The control plane could not be started or is not usable."""


class K8sTestEnvUnavailableError(K8sTestEnvError):
    """The binaries are not built (run ``scripts/k8s-testenv build``)."""


# -- the cached binaries -------------------------------------------------------------------------


def pinned_versions() -> dict[str, str]:
    """The versions pinned in ``scripts/k8s-testenv``: keys ``kubernetes``, ``etcd``, ``kwok``."""
    names = {"K8S_VERSION": "kubernetes", "ETCD_VERSION": "etcd", "KWOK_VERSION": "kwok"}
    found: dict[str, str] = {}
    for line in SCRIPT.read_text().splitlines():
        match = re.fullmatch(r"([A-Z0-9]+_VERSION)=(v[0-9][0-9A-Za-z.+-]*)", line.strip())
        if match and match.group(1) in names:
            found[names[match.group(1)]] = match.group(2)
    missing = sorted(set(names.values()) - found.keys())
    if missing:
        raise K8sTestEnvError(f"{SCRIPT} pins no version for {', '.join(missing)}")
    return found


def cache_dir() -> Path:
    """``${SLOTPOOL_K8S_CACHE:-~/.cache/slotpool/k8s}/<kubernetes version>``."""
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "slotpool" / "k8s")
    return Path(root) / pinned_versions()["kubernetes"]


def bin_dir() -> Path:
    """The cache directory holding the five binaries, checked against the pinned versions."""
    cache = cache_dir()
    versions = pinned_versions()
    expected = "".join(f"{name}={versions[name]}\n" for name in ("kubernetes", "etcd", "kwok"))
    stamp = cache / "stamp"
    hint = f"run `{SCRIPT.relative_to(SCRIPT.parents[1])} build` (10-25 minutes, once per machine)"
    try:
        actual = stamp.read_text()
    except OSError:
        raise K8sTestEnvUnavailableError(
            f"Kubernetes binaries not built in {cache}: {hint}"
        ) from None
    if actual != expected:
        raise K8sTestEnvUnavailableError(
            f"{stamp} names other versions ({actual.split()}, want {expected.split()}): {hint}"
        )
    binaries = cache / "bin"
    missing = [name for name in BINARIES if not os.access(binaries / name, os.X_OK)]
    if missing:
        raise K8sTestEnvUnavailableError(f"{binaries} lacks {', '.join(missing)}: {hint}")
    return binaries


# -- processes -----------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a live pid, from ``/proc/<pid>/stat``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # the command name may hold spaces and ")"
    return fields[0], int(fields[19])


@dataclass
class _Process:
    """A process we started: identified by pid *and* start time, so a reused pid is never hit."""

    name: str
    pid: int
    start_time: int
    popen: subprocess.Popen[bytes] | None = None  # None when attached from a state file

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        stat = _proc_stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == self.start_time

    def signal(self, signum: int) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            if self.popen is not None:
                self.popen.send_signal(signum)
            else:
                os.kill(self.pid, signum)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "start_time": self.start_time}


def _stop_all(processes: Iterable[_Process], timeout: float = _STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once none of them is alive."""
    group = [p for p in processes if p.alive()]
    for process in group:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in group) and time.monotonic() < deadline:
        time.sleep(0.1)
    for process in group:
        process.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(p.alive() for p in group) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in group:
        if process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=1.0)


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


# -- certificates (openssl: the `cryptography` package is not a dependency) ----------------------

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = {server_sans}
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""
_SERVER_SANS = (
    "IP:127.0.0.1",
    f"IP:{SERVICE_IP}",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)
_CERT_DAYS = "365"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise K8sTestEnvUnavailableError("openssl is needed to create the test certificates")
    result = subprocess.run(
        [openssl, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_OPENSSL_TIMEOUT,
        check=False,
        env={**os.environ, "OPENSSL_CONF": str(cwd / "openssl.cnf")},
    )
    if result.returncode != 0:
        raise K8sTestEnvError(f"openssl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def _make_pki(pki: Path) -> None:
    """CA, serving cert, admin client cert (O=system:masters), service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "openssl.cnf").write_text(_OPENSSL_CONFIG.format(server_sans=", ".join(_SERVER_SANS)))

    def key(name: str) -> None:
        _openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", f"{name}.key", cwd=pki,
        )  # fmt: skip
        (pki / f"{name}.key").chmod(0o600)

    def issue(name: str, subject: str, extensions: str) -> None:
        key(name)
        _openssl(
            "req", "-new", "-key", f"{name}.key", "-subj", subject, "-config", "openssl.cnf",
            "-out", f"{name}.csr", cwd=pki,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", _CERT_DAYS, "-sha256",
            "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt", cwd=pki,
        )  # fmt: skip
        (pki / f"{name}.csr").unlink()

    key("ca")
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=slotpool-k8s-testenv-ca",
        "-config", "openssl.cnf", "-extensions", "ca", "-days", _CERT_DAYS, "-sha256",
        "-set_serial", f"0x{secrets.token_hex(16)}", "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    issue("apiserver", "/CN=kube-apiserver", "server")
    issue("admin", "/O=system:masters/CN=slotpool-test-admin", "client")
    key("sa")
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


# -- the environment -----------------------------------------------------------------------------


class K8sTestEnv:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1."""

    def __init__(self, base_dir: Path, bin_dir: Path) -> None:
        self.base_dir = base_dir
        self.bin_dir = bin_dir
        self.kubeconfig = base_dir / "kubeconfig"
        self.server = ""  # https://127.0.0.1:<port>, set once the API server runs
        self.node_names: list[str] = []
        self._processes: list[_Process] = []
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
            _stop_all(reversed(env._processes))
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
            _Process(p["name"], int(p["pid"]), int(p["start_time"])) for p in state["processes"]
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
            _stop_all([by_name.pop(name) for name in names if name in by_name])
        _stop_all(by_name.values())
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
        _make_pki(self.pki_dir)
        self._retry_on_port_clash(self._start_etcd)
        self._retry_on_port_clash(self._start_apiserver)
        self._write_kubeconfig()
        self._start_controllers()
        self._create_nodes()
        self.wait_for_nodes_ready()
        self._save_state()

    def _retry_on_port_clash(self, start: Callable[[], _Process]) -> None:
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

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> _Process:
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
        stat = _proc_stat(popen.pid)
        process = _Process(name, popen.pid, stat[1] if stat else 0, popen)
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
            "processes": [p.to_json() for p in self._processes],
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

    def _start_etcd(self) -> _Process:
        taken = set(self._ports.values())
        client, peer = _free_port(taken), _free_port(taken)
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

    def _start_apiserver(self) -> _Process:
        port = _free_port(set(self._ports.values()))
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
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "slotpool-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [
                {
                    "name": "slotpool-test-admin",
                    "user": {"client-certificate": str(cert), "client-key": str(key)},
                }
            ],
            "contexts": [
                {
                    "name": "slotpool-test",
                    "context": {"cluster": "slotpool-test", "user": "slotpool-test-admin"},
                }
            ],
            "current-context": "slotpool-test",
            "preferences": {},
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

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
        manager_port, scheduler_port = _free_port(taken), _free_port(taken)
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
        self.node_names = [_node_name(index) for index in range(NODE_COUNT)]
        for index, name in enumerate(self.node_names):
            response = self.client.post("/api/v1/nodes", json=_fake_node(index))
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


def _get_ok(client: httpx.Client, url: str) -> bool:
    response = client.get(url)
    return response.status_code == 200 and response.text.strip() == "ok"


def _raise_for_status(response: httpx.Response, what: str) -> None:
    if not response.is_success:
        raise K8sTestEnvError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


def _fake_node(index: int) -> dict[str, Any]:
    """A Node as kwok's own examples write it (annotation and label select kwok's nodes).

    Its InternalIP (``10.1.0.<index + 1>``, never contacted) becomes its Pods' ``hostIP``.
    """
    name = _node_name(index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        # No kwok.x-k8s.io/node:NoSchedule taint: every node here is fake, so Pods need no
        # toleration to be scheduled.
        "spec": {},
        "status": {
            "allocatable": dict(NODE_CAPACITY),
            "capacity": dict(NODE_CAPACITY),
            "nodeInfo": {
                "architecture": "amd64",
                "kubeProxyVersion": "fake",
                "kubeletVersion": "fake",
                "operatingSystem": "linux",
            },
            "addresses": [
                {"type": "InternalIP", "address": f"10.1.0.{index + 1}"},
                {"type": "Hostname", "address": name},
            ],
            "phase": "Running",
        },
    }


def _node_name(index: int) -> str:
    return f"kwok-node-{index}"


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


# -- command line (scripts/k8s-testenv) ----------------------------------------------------------


def _cmd_up(base_dir: Path, bin_path: Path) -> int:
    if (base_dir / STATE_FILE).exists():
        previous = K8sTestEnv.attach(base_dir)
        if previous.running() and previous.ready():
            print(f"already running in {base_dir}", file=sys.stderr)
            print(previous.kubeconfig)
            return 0
        print(f"clearing a stopped or broken environment in {base_dir}", file=sys.stderr)
        previous.stop()
    started = time.monotonic()
    try:
        env = K8sTestEnv.start(base_dir, bin_path, keep_running=True)
    except K8sTestEnvError as exc:
        logs = base_dir / "logs"
        hint = f"\n(every process is stopped; logs kept in {logs})" if logs.is_dir() else ""
        print(f"k8s-testenv: {exc}{hint}", file=sys.stderr)
        return 1
    print(
        f"ready in {time.monotonic() - started:.1f}s: {env.server}, "
        f"{len(env.node_names)} fake nodes; logs in {env.base_dir / 'logs'}",
        file=sys.stderr,
    )
    print(env.kubeconfig)
    return 0


def _cmd_down(base_dir: Path) -> int:
    if not (base_dir / STATE_FILE).exists():
        print(f"no test environment in {base_dir}", file=sys.stderr)
        return 0
    env = K8sTestEnv.attach(base_dir)
    alive = [(name, pid) for name, pid, running in env.processes() if running]
    env.stop()
    left = [(name, pid) for name, pid, running in env.processes() if running]
    if left:
        print(f"still running: {left}", file=sys.stderr)
        return 1
    stopped = ", ".join(f"{name} ({pid})" for name, pid in alive) or "nothing was running"
    print(f"stopped: {stopped}; removed {base_dir}", file=sys.stderr)
    return 0


def _cmd_status(base_dir: Path) -> int:
    if not (base_dir / STATE_FILE).exists():
        print(f"not running (no test environment in {base_dir})")
        return 3
    env = K8sTestEnv.attach(base_dir)
    for name, pid, alive in env.processes():
        print(f"{name:<24} pid {pid:<8} {'running' if alive else 'exited'}")
    ready = env.server != "" and env.ready()
    print(f"api server  {env.server or '-'} {'ready' if ready else 'not ready'}")
    print(f"kubeconfig  {env.kubeconfig}")
    return 0 if env.running() and ready else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s_env", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start detached; print the kubeconfig path")
    up.add_argument("dir", type=Path)
    up.add_argument("--bin-dir", type=Path, help="default: the build cache")
    commands.add_parser("down", help="stop the processes and remove DIR").add_argument(
        "dir", type=Path
    )
    commands.add_parser("status", help="show the processes").add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    base_dir: Path = args.dir.resolve()
    try:
        if args.command == "up":
            return _cmd_up(base_dir, args.bin_dir or bin_dir())
        if args.command == "down":
            return _cmd_down(base_dir)
        return _cmd_status(base_dir)
    except K8sTestEnvError as exc:
        print(f"k8s-testenv: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
