"""A free TCP port of 127.0.0.1, the one way the harness picks its ports."""

from __future__ import annotations

import socket


def free_port(taken: set[int] | None = None) -> int:
    """A port nobody listens on now (the kernel's pick). With ``taken``, one not in it, which is
    then added: several ports picked before any is bound (a cluster's components) differ."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if taken is None:
            return port
        if port not in taken:
            taken.add(port)
            return port
