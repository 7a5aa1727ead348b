"""A real Kubernetes control plane (etcd, kube-apiserver, scheduler, controller-manager, kwok),
started once for the session from binaries built by ``scripts/k8s-testenv build``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s_env import K8sTestEnv, K8sTestEnvUnavailableError, bin_dir

REQUIRED_ENV = "SLOTPOOL_TEST_K8S_REQUIRED"


@pytest.fixture(scope="session")
def k8s() -> Iterator[K8sTestEnv]:
    try:
        binaries = bin_dir()
    except K8sTestEnvUnavailableError as exc:
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(f"the Kubernetes test binaries are required ({REQUIRED_ENV}=1): {exc}")
        pytest.skip(f"Kubernetes test binaries not built: {exc}")
    env = K8sTestEnv.start(Path(tempfile.mkdtemp(prefix="slotpool-k8s-")), binaries)
    try:
        env.wait_for_nodes_ready()
        yield env
    finally:
        env.stop()
