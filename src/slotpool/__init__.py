"""slotpool: run tasks on self-hosted agent pools whose agents are bare Pods with N task slots."""

__version__ = "0.1.0"
