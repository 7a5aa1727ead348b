"""What the Kubernetes test cluster is made of: the binaries built by ``scripts/k8s-testenv
build`` into a per-machine cache (``bin_dir()`` finds them, checked against the versions the
script pins), the certificates of its API server and admin user (openssl: the ``cryptography``
package is not a dependency) and its fake Nodes.

Environment: ``SLOTPOOL_K8S_CACHE`` is the cache root (default ``~/.cache/slotpool/k8s``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

CACHE_ENV = "SLOTPOOL_K8S_CACHE"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "k8s-testenv"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110"}
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` Service
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


def make_pki(pki: Path) -> None:
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


# -- the fake Nodes --------------------------------------------------------------------------------


def fake_node(index: int) -> dict[str, Any]:
    """A Node as kwok's own examples write it (annotation and label select kwok's nodes).

    Its InternalIP (``10.1.0.<index + 1>``, never contacted) becomes its Pods' ``hostIP``.
    """
    name = node_name(index)
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


def node_name(index: int) -> str:
    return f"kwok-node-{index}"
