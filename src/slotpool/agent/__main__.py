"""``python -m slotpool.agent``: the agent as its own process, configured by its environment."""

from slotpool.agent.main import main

raise SystemExit(main())
