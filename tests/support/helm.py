"""Helm, built by ``scripts/helm build`` into a per-machine cache, run on the chart in
``deploy/chart/slotpool`` with a home of its own (nothing of the developer's Helm setup is read
or written).

Environment: ``SLOTPOOL_HELM_CACHE`` is the cache root (default ``~/.cache/slotpool/helm``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.go_tool import GoTool, ToolUnavailableError

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "slotpool"
HelmUnavailableError = ToolUnavailableError

HELM = GoTool(
    script="helm",
    version_variable="HELM_VERSION",
    binary="helm",
    stamp_key="helm",
    cache_env="SLOTPOOL_HELM_CACHE",
    build_minutes="3-14 minutes",
)


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path  # Helm's cache, configuration and data directories
    kubeconfig: Path | None = None

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """``helm ARGS`` (not checked: the caller reads the exit status and stderr)."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        argv = [str(self.binary), *map(str, args)]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    def template(
        self, release: str, namespace: str, values: Sequence[Path] = (), *sets: str
    ) -> list[dict[str, Any]]:
        """The chart rendered (``helm template``) with the values files and ``--set`` values."""
        result = self.run(
            "template", release, CHART, "--namespace", namespace, *_values(values, sets)
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _values(files: Sequence[Path], sets: Sequence[str]) -> list[str]:
    args: list[str] = []
    for path in files:
        args += ["--values", str(path)]
    for value in sets:
        args += ["--set", value]
    return args
