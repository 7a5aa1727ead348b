"""Fixtures of the chart's tests: ``helm`` (the cached build; skipped when it is not built, failing
when ``SLOTPOOL_TEST_HELM_REQUIRED=1``, as ``scripts/test`` sets) and ``helm_k8s`` (the same, with
the test cluster's admin kubeconfig)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helm import HELM, Helm, HelmUnavailableError
from tests.support.kube import K8sTestEnv

REQUIRED_ENV = "SLOTPOOL_TEST_HELM_REQUIRED"


@pytest.fixture(scope="session")
def helm() -> Iterator[Helm]:
    try:
        binary = HELM.path()
    except HelmUnavailableError as exc:
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(f"Helm is required ({REQUIRED_ENV}=1): {exc}")
        pytest.skip(str(exc))
    home = Path(tempfile.mkdtemp(prefix="slotpool-helm-"))
    try:
        yield Helm(binary, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def helm_k8s(helm: Helm, k8s: K8sTestEnv) -> Helm:
    return Helm(helm.binary, helm.home, k8s.kubeconfig)
