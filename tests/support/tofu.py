"""The OpenTofu the Terraform example's test runs: built by ``scripts/tofu build`` into a
per-machine cache, found here by the version the script pins.

Environment: ``SLOTPOOL_TOFU_CACHE`` is the cache root (default ``~/.cache/slotpool/tofu``).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.go_tool import GoTool, ToolUnavailableError

TofuUnavailableError = ToolUnavailableError

TOFU = GoTool(
    script="tofu",
    version_variable="TOFU_VERSION",
    binary="tofu",
    stamp_key="opentofu",
    cache_env="SLOTPOOL_TOFU_CACHE",
    build_minutes="10-20 minutes",
)


def pinned_version() -> str:
    """The version ``scripts/tofu`` pins (its ``TOFU_VERSION=`` line)."""
    return TOFU.pinned_version()


def tofu_binary() -> Path:
    """The cached ``tofu`` of the pinned version, checked against its stamp."""
    return TOFU.path()
