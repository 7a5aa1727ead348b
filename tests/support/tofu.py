"""The OpenTofu the Terraform example's test runs: built by ``scripts/tofu build`` into a
per-machine cache, found here by the version the script pins.

Environment: ``SLOTPOOL_TOFU_CACHE`` is the cache root (default ``~/.cache/slotpool/tofu``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CACHE_ENV = "SLOTPOOL_TOFU_CACHE"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tofu"


class TofuUnavailableError(Exception):
    """OpenTofu is not built (run ``scripts/tofu build``)."""


def pinned_version() -> str:
    """The version ``scripts/tofu`` pins (its ``TOFU_VERSION=`` line)."""
    for line in SCRIPT.read_text().splitlines():
        match = re.fullmatch(r"TOFU_VERSION=(v[0-9][0-9A-Za-z.+-]*)", line.strip())
        if match:
            return match.group(1)
    raise TofuUnavailableError(f"{SCRIPT} pins no TOFU_VERSION")


def tofu_binary() -> Path:
    """The cached ``tofu`` of the pinned version, checked against its stamp."""
    version = pinned_version()
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "slotpool" / "tofu")
    cache = Path(root) / version
    hint = "run `scripts/tofu build` (10-20 minutes cold, once per machine)"
    try:
        stamp = (cache / "stamp").read_text()
    except OSError:
        raise TofuUnavailableError(f"OpenTofu {version} is not built in {cache}: {hint}") from None
    if stamp != f"opentofu={version}\n":
        raise TofuUnavailableError(f"{cache}/stamp names {stamp.strip()!r}: {hint}")
    binary = cache / "bin" / "tofu"
    if not os.access(binary, os.X_OK):
        raise TofuUnavailableError(f"{binary} is missing: {hint}")
    return binary
