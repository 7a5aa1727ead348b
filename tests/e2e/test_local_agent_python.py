"""A server run as root starts its local agents as ``nobody``, who often cannot run the server's
own interpreter (one under ``/root``, as here). Started as a new user would start it, with no
``SLOTPOOL_LOCAL_AGENT_PYTHON``, it finds an interpreter that user can run, and tasks run."""

from __future__ import annotations

import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

from slotpool.runtime.agent_python import agent_interpreter, can_run
from tests.e2e.conftest import ADMIN, api
from tests.e2e.helpers import TASKS, submit, until_final
from tests.e2e.test_local_pool import local_pool
from tests.support.ports import free_port
from tests.support.server import server_process, server_settings

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="agents change user only under root")


@root_only
def test_a_root_server_without_an_agent_python_setting_runs_local_tasks(tmp_path: Path) -> None:
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port, local_agent_python=None)
    log_file = tmp_path / "server.log"
    with server_process(settings, log_file, port=port, grace=0) as server, api(server) as client:
        pool = local_pool(client, pods=1, slots=1, name="plain")
        done = until_final(client, submit(client, pool, command="echo uid=$(id -u)"))
        log = client.get(f"{TASKS}/{done['id']}/logs").text
    assert done["status"] == "succeeded", (done, log_file.read_text())
    assert "uid=65534" in log


@root_only
def test_the_interpreter_found_for_the_agent_user_is_one_it_can_run() -> None:
    nobody = pwd.getpwnam("nobody")
    python = agent_interpreter(nobody.pw_uid, nobody.pw_gid, None)
    assert can_run(python, nobody.pw_uid, nobody.pw_gid)
    if not can_run(Path(sys.executable), nobody.pw_uid, nobody.pw_gid):
        assert python != Path(sys.executable)
        # Made where only root can write: nothing a task could plant for the next start.
        for part in python.parent.parents:
            info = part.stat()
            assert info.st_uid == 0, part
            assert not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH), part


def test_a_configured_interpreter_is_taken_as_given(tmp_path: Path) -> None:
    given = tmp_path / "python"
    assert agent_interpreter(65534, 65534, given) == given
