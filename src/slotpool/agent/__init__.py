"""slotpool's agent: the process in a Pod (or on any machine of a static pool) that runs task
steps in its N slots and talks to the control plane over HTTP (docs/agent-protocol.md).

It imports nothing of the control plane (api, services, store, cli): the protocol
(``slotpool.protocol``, the models the server's routes use too) is its only contract with the
server, so either side can be redeployed alone.
"""

from slotpool.agent.agent import run_agent
from slotpool.agent.config import AgentConfig, ConfigError
from slotpool.agent.main import main

__all__ = ["AgentConfig", "ConfigError", "main", "run_agent"]
