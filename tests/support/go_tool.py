"""A Go program built by one of ``scripts/tofu`` and ``scripts/helm`` into a per-machine cache
(``scripts/lib/cached-go-tool.sh``), found here by the version its script pins and checked
against the cache's stamp."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


class ToolUnavailableError(Exception):
    """The program is not built (its script's ``build`` builds it)."""


@dataclass(frozen=True)
class GoTool:
    """``scripts/<script>``, which pins ``<version_variable>=v...`` and builds ``binary`` into
    ``$<cache_env>`` (default ``~/.cache/slotpool/<script>``)/<version>/bin."""

    script: str
    version_variable: str
    binary: str
    stamp_key: str
    cache_env: str
    build_minutes: str  # how long a cold build takes, for the hint

    def pinned_version(self) -> str:
        """The version the script pins."""
        path = SCRIPTS / self.script
        pattern = re.compile(rf"{self.version_variable}=(v[0-9][0-9A-Za-z.+-]*)")
        for line in path.read_text().splitlines():
            match = pattern.fullmatch(line.strip())
            if match:
                return match.group(1)
        raise ToolUnavailableError(f"{path} pins no {self.version_variable}")

    def path(self) -> Path:
        """The cached binary of the pinned version, checked against its stamp."""
        version = self.pinned_version()
        default = Path.home() / ".cache" / "slotpool" / self.script
        cache = Path(os.environ.get(self.cache_env) or default) / version
        hint = f"run `scripts/{self.script} build` ({self.build_minutes} cold, once per machine)"
        try:
            stamp = (cache / "stamp").read_text()
        except OSError:
            raise ToolUnavailableError(
                f"{self.binary} {version} is not built in {cache}: {hint}"
            ) from None
        if stamp != f"{self.stamp_key}={version}\n":
            raise ToolUnavailableError(f"{cache}/stamp names {stamp.strip()!r}: {hint}")
        binary = cache / "bin" / self.binary
        if not os.access(binary, os.X_OK):
            raise ToolUnavailableError(f"{binary} is missing: {hint}")
        return binary
