"""The agent reads its environment once; a missing or malformed variable is named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slotpool import __version__
from slotpool.agent import AgentConfig, ConfigError
from slotpool.agent.isolation import StepUser

ENV = {
    "SLOTPOOL_SERVER_URL": "http://control-plane:8080/",
    "SLOTPOOL_POOL_ID": "pool-abc",
    "SLOTPOOL_AGENT_NAME": "slotpool-pool-abc-x7k2p",
    "SLOTPOOL_SLOTS": "3",
    "SLOTPOOL_AGENT_TOKEN": "spt_secret",
}


def test_reads_the_protocol_variables(tmp_path: Path) -> None:
    config = AgentConfig.from_env({**ENV, "SLOTPOOL_WORK_DIR": str(tmp_path)})
    assert config.server_url == "http://control-plane:8080"
    assert (config.pool_id, config.name, config.slots) == (
        "pool-abc",
        ENV["SLOTPOOL_AGENT_NAME"],
        3,
    )
    assert config.token == "spt_secret"
    assert config.work_dir == tmp_path
    assert (config.grace_seconds, config.drain_grace_seconds) == (10.0, 60.0)
    assert config.version == __version__
    assert "spt_secret" not in repr(config)


def test_work_dir_defaults_to_a_temporary_directory_per_agent() -> None:
    config = AgentConfig.from_env(ENV)
    assert config.work_dir.name == "slotpool-pool-abc-slotpool-pool-abc-x7k2p"


def test_optional_grace_periods() -> None:
    env = {**ENV, "SLOTPOOL_CANCEL_GRACE_SECONDS": "2.5", "SLOTPOOL_DRAIN_GRACE_SECONDS": "120"}
    config = AgentConfig.from_env(env)
    assert (config.grace_seconds, config.drain_grace_seconds) == (2.5, 120.0)


@pytest.mark.parametrize("variable", sorted(ENV))
def test_a_missing_variable_is_named(variable: str) -> None:
    env = {k: v for k, v in ENV.items() if k != variable}
    with pytest.raises(ConfigError, match=variable):
        AgentConfig.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLOTPOOL_SLOTS", "many"),
        ("SLOTPOOL_SLOTS", "0"),
        ("SLOTPOOL_DRAIN_GRACE_SECONDS", "-1"),
        ("SLOTPOOL_SERVER_URL", "control-plane:8080"),
    ],
)
def test_a_malformed_variable_is_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        AgentConfig.from_env({**ENV, variable: value})


def test_the_pods_uid_and_the_pools_env_for_steps_are_read() -> None:
    env = {**ENV, "SLOTPOOL_POD_UID": "uid-1", "SLOTPOOL_STEP_ENV": "PROXY, SLOTPOOL_AGENT_TOKEN"}
    config = AgentConfig.from_env({**env, "PROXY": "http://proxy"})
    assert config.pod_uid == "uid-1"
    assert "uid-1" not in repr(config)
    # slotpool's own variables are never passed on, whatever the list says.
    assert dict(config.step_env) == {"PROXY": "http://proxy"}


@pytest.mark.skipif(os.geteuid() != 0, reason="the default for an agent running as root")
def test_an_agent_running_as_root_runs_its_steps_as_nobody_unless_told() -> None:
    assert AgentConfig.from_env(ENV).step_user == StepUser("nobody", 65534, 65534)
    assert AgentConfig.from_env({**ENV, "SLOTPOOL_STEP_USER": "none"}).step_user is None
    assert AgentConfig.from_env({**ENV, "SLOTPOOL_STEP_USER": "4242"}).step_user == StepUser(
        "4242", 4242, 4242
    )
    with pytest.raises(ConfigError, match="no user 'no-such-user'"):
        AgentConfig.from_env({**ENV, "SLOTPOOL_STEP_USER": "no-such-user"})
