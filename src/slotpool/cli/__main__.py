"""``python -m slotpool.cli``: the same as the ``slotpool`` command."""

from slotpool.cli import main

main()
