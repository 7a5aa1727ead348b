"""The config form's "Dry run" on the real test cluster: the form's Pod is sent to the API server
as a server-side dry run; a Pod its namespace admits is said to be accepted, one above the
namespace's LimitRange is refused in the API server's words, and nothing is created either way."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client, KubeConfig
from lightkube.models.core_v1 import LimitRangeItem, LimitRangeSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import LimitRange, Namespace, Pod
from playwright.sync_api import Browser, Page, expect

from tests.support.kube import K8sTestEnv
from tests.support.ports import free_port
from tests.support.server import server_settings
from tests.ui.conftest import ADMIN, UI_DIST, Server, Shots, sign_in

NAMESPACE = "slotpool-ui-dry-run"


@pytest.fixture(scope="module")
def cluster_server(k8s: K8sTestEnv) -> Iterator[Server]:
    """A server of its own with the test cluster (the package's server has only local pools)."""
    work = Path(tempfile.mkdtemp(prefix="slotpool-ui-k8s-"))
    port = free_port()
    settings = server_settings(
        work,
        admin=ADMIN,
        port=port,
        ui_dir=UI_DIST,
        local_runtime=False,
        kubeconfig=k8s.kubeconfig,
        pod_sync_seconds=0,  # nothing but the request under test talks to the cluster
    )
    running = Server.of(settings, work / "server.log", port=port).started()
    try:
        yield running
    finally:
        running.stop(grace=3)


@pytest.fixture(scope="module")
def kube(k8s: K8sTestEnv) -> Client:
    client = Client(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-tests")
    # A namespace whose LimitRange admits no container above one CPU: an admission rule only the
    # API server knows.
    client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    limit = LimitRangeItem(type="Container", max={"cpu": "1"})
    client.create(
        LimitRange(
            metadata=ObjectMeta(name="cpu-cap", namespace=NAMESPACE),
            spec=LimitRangeSpec(limits=[limit]),
        )
    )
    return client


@pytest.fixture
def cluster_page(browser: Browser, cluster_server: Server) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1366, "height": 900}, base_url=cluster_server.url
    )
    try:
        page = context.new_page()
        sign_in(page)
        yield page
    finally:
        context.close()


def test_the_dry_run_on_the_config_form_shows_the_clusters_verdict(
    cluster_page: Page, cluster_server: Server, kube: Client, artifacts: Path
) -> None:
    config = {
        "image": "registry.example/slotpool-agent:1",
        "namespace": NAMESPACE,
        "min_replicas": 0,
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    body = {"name": "ui-dry-run", "pool_type": "k8s", "k8s_config": config}
    with cluster_server.api() as client:
        created = client.post("/api/v1/agent-pools", json=body)
        assert created.status_code == 201, created.text
        pool_id = created.json()["pool_id"]
    page = cluster_page
    shot = Shots(page, artifacts, "the_dry_run_on_the_config_form")

    page.goto(f"/pools/{pool_id}/config")
    result = page.get_by_role("region", name="Dry run result")
    result.get_by_role("button", name="Dry run").click()
    expect(result.get_by_role("status")).to_contain_text("The cluster would accept this Pod")
    shot("accepted")

    # Two CPUs: slotpool's own checks pass it, the namespace's LimitRange does not.
    page.get_by_label("CPU limit").fill("2")
    expect(result.get_by_role("status")).to_have_count(0)  # a verdict on the old form is dropped
    result.get_by_role("button", name="Dry run").click()
    refusal = result.get_by_role("alert")
    expect(refusal).to_contain_text("the cluster refused the Pod (dry run)")
    expect(refusal).to_contain_text("maximum cpu usage per Container is 1")
    expect(refusal.locator("code")).to_have_text("k8s_config")
    shot("refused-by-the-cluster")

    # Nothing was saved or created.
    with cluster_server.api() as client:
        saved = client.get(f"/api/v1/agent-pools/{pool_id}/k8s-config").json()
    assert saved["resources"]["limits"]["cpu"] == "500m"
    assert list(kube.list(Pod, namespace=NAMESPACE)) == []


def test_the_form_is_compared_with_a_running_pod_as_the_cluster_holds_it(
    cluster_page: Page, cluster_server: Server, kube: Client, artifacts: Path
) -> None:
    config = {
        "image": "registry.example/slotpool-agent:1",
        "namespace": NAMESPACE,
        "min_replicas": 1,
        "max_replicas": 1,
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    body = {"name": "ui-running-diff", "pool_type": "k8s", "k8s_config": config}
    with cluster_server.api() as client:
        created = client.post("/api/v1/agent-pools", json=body)
        assert created.status_code == 201, created.text
        pool_id = created.json()["pool_id"]
        synced = client.post(f"/api/v1/agent-pools/{pool_id}/sync-deployment")
        assert synced.status_code == 200, synced.text
        (name,) = [
            p["name"] for p in client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
        ]
    # Someone changed the running Pod by hand: the saved configuration no longer says what runs.
    patch = {"spec": {"containers": [{"name": "agent", "image": "registry.example/hotfix:2"}]}}
    kube.patch(Pod, name, patch, namespace=NAMESPACE)
    page = cluster_page
    shot = Shots(page, artifacts, "the_form_against_a_running_pod")

    page.goto(f"/pools/{pool_id}/config")
    expect(page.get_by_test_id("diff-empty")).to_contain_text("the same Pod as the saved")
    page.get_by_label("Changes against").select_option(label=f"{name} (current, as running)")
    diff = page.get_by_label(f"Changes against {name}")
    expect(diff.locator(".diff-del")).to_have_text(
        re.compile(r'"image": "registry.example/hotfix:2"')
    )
    expect(diff.locator(".diff-add")).to_have_text(
        re.compile(r'"image": "registry.example/slotpool-agent:1"')
    )
    # What the cluster adds (defaults, uid, status) is left out of the comparison.
    expect(diff).not_to_contain_text("dnsPolicy")
    expect(diff).not_to_contain_text("uid")
    shot("hand-edited-image")

    # And against an edited form: both changes.
    page.get_by_label("CPU limit").fill("750m")
    expect(diff.locator(".diff-add").filter(has_text="750m")).to_have_count(1)
    shot("form-edited")
