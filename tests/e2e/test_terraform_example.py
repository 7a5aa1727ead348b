"""The Terraform example (``examples/terraform``) as a user runs it: the real ``tofu`` on a
local pool of a real server, the task file as written. Plan, read the plan in the log, approve
through the CLI, apply in the same slot and working directory; the state outlives the task in a
shared directory, so a second run plans no changes; a run whose approval is refused (cancelled)
applies nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import ADMIN, api
from tests.e2e.helpers import TASKS, task, until_final, wait_for
from tests.support.ports import free_port
from tests.support.server import ServerProcess, server_process, server_settings
from tests.support.tofu import TofuUnavailableError, tofu_binary

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "terraform"
REQUIRED_ENV = "SLOTPOOL_TEST_TOFU_REQUIRED"
PLANNED = "Plan: 3 to add, 0 to change, 0 to destroy."


@pytest.fixture(scope="module")
def tofu() -> Path:
    try:
        return tofu_binary()
    except TofuUnavailableError as exc:
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(f"OpenTofu is required ({REQUIRED_ENV}=1): {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def shared() -> Iterator[Path]:
    """What the pool's agents share, reachable whichever user they run as (the pytest temporary
    directories and the cache in root's home are not): ``tofu``, its CLI configuration (empty),
    the example's configuration and the state directory, which they write."""
    root = Path(tempfile.mkdtemp(prefix="slotpool-terraform-"))
    try:
        root.chmod(0o755)
        (root / "state").mkdir(mode=0o777)
        (root / "state").chmod(0o777)  # not narrowed by the umask
        (root / "config").mkdir(mode=0o755)
        for source in EXAMPLE.glob("*.tf"):
            shutil.copy(source, root / "config" / source.name)
        (root / "tofurc").write_text("")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def state_dir(shared: Path) -> Path:
    return shared / "state"


@pytest.fixture
def server(tmp_path: Path, tofu: Path, shared: Path) -> Iterator[ServerProcess]:
    """A server with the local runtime whose agents find ``tofu`` on their PATH (they inherit
    the server's environment)."""
    (shared / "bin").mkdir(mode=0o755)
    shutil.copy(tofu, shared / "bin" / "tofu")
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port)
    extra = {
        "PATH": f"{shared / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CLI_CONFIG_FILE": str(shared / "tofurc"),
    }
    with server_process(settings, tmp_path / "server.log", port=port, extra_env=extra) as running:
        yield running


def local_pool(client: httpx.Client) -> str:
    body = {
        "name": "terraform",
        "pool_type": "local",
        "k8s_config": {"min_replicas": 1, "max_replicas": 1, "slots_per_pod": 2},
    }
    response = client.post("/api/v1/agent-pools", json=body)
    assert response.status_code == 201, response.text
    pool_id: str = response.json()["pool_id"]
    return pool_id


def submit_example(client: httpx.Client, pool_id: str, state: Path, **env: str) -> str:
    """``examples/terraform/task.yaml`` as the task body, with this test's directories."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLE / "task.yaml").read_text())
    config = state.parent / "config"
    body["env"] |= {"TF_CONFIG_DIR": str(config), "TF_STATE_DIR": str(state), **env}
    response = client.post(TASKS, json={**body, "pool_id": pool_id})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def log_of(client: httpx.Client, task_id: str) -> str:
    return client.get(f"{TASKS}/{task_id}/logs").text


def planned(client: httpx.Client, task_id: str) -> str:
    """The log once the plan step is done and the apply waits for its approval."""
    wait_for(
        lambda: task(client, task_id)["status"] == "awaiting_approval",
        what="the plan step to finish and the apply to wait for approval",
        seconds=120,
        detail=lambda: (task(client, task_id)["status"], log_of(client, task_id)),
    )
    return log_of(client, task_id)


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``slotpool`` command line, against the server."""
    return subprocess.run(
        [sys.executable, "-m", "slotpool.cli", *args, "--url", server.url, "--token", ADMIN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def resources(state: Path) -> dict[str, dict[str, Any]]:
    found = json.loads((state / "terraform.tfstate").read_text())
    return {f"{r['type']}.{r['name']}": r["instances"][0]["attributes"] for r in found["resources"]}


def test_plan_approve_apply_then_no_changes_then_a_refused_run_applies_nothing(
    server: ServerProcess, state_dir: Path
) -> None:
    with api(server) as client:
        pool_id = local_pool(client)

        # 1. The plan, readable in the log before anyone approves; nothing applied yet.
        first = submit_example(client, pool_id, state_dir)
        log = planned(client, first)
        assert "OpenTofu has been successfully initialized!" in log
        assert "terraform.io/builtin/terraform is built in to OpenTofu" in log  # no download
        assert PLANNED in log
        assert "Apply complete" not in log
        assert not (state_dir / "terraform.tfstate").exists()
        waiting = task(client, first)

        approved = cli(server, "tasks", "approve", first)
        assert approved.returncode == 0, approved.stdout + approved.stderr
        done = until_final(client, first, seconds=120)
        log = log_of(client, first)
        assert done["status"] == "succeeded", log
        assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in log
        # The apply ran where the plan was made: the same slot, and the saved plan file found.
        assert (done["pod_name"], done["slot_index"]) == (
            waiting["pod_name"],
            waiting["slot_index"],
        )
        applied = resources(state_dir)
        assert sorted(applied) == [
            "terraform_data.app",
            "terraform_data.database",
            "terraform_data.network",
        ]
        assert applied["terraform_data.app"]["input"]["value"] == {
            "database": "db-dev",
            "name": "app-dev",
        }
        state_after_apply = (state_dir / "terraform.tfstate").read_bytes()

        # 2. The same task again: the state is found, nothing to change.
        second = submit_example(client, pool_id, state_dir)
        assert "No changes. Your infrastructure matches the configuration." in planned(
            client, second
        )
        assert cli(server, "tasks", "cancel", second).returncode == 0
        assert until_final(client, second)["status"] == "cancelled"

        # 3. A change planned, its approval refused: nothing is applied.
        third = submit_example(client, pool_id, state_dir, TF_VAR_environment="staging")
        assert "Plan: 0 to add, 3 to change, 0 to destroy." in planned(client, third)
        refused = cli(server, "tasks", "cancel", third)
        assert refused.returncode == 0, refused.stdout + refused.stderr
        assert until_final(client, third)["status"] == "cancelled"
        assert "Apply complete" not in log_of(client, third)
        assert (state_dir / "terraform.tfstate").read_bytes() == state_after_apply
