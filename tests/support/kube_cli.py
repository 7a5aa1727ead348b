"""The command line of the Kubernetes test cluster, which ``scripts/k8s-testenv up|down|status``
drive (``python -m tests.support.kube_cli up DIR --bin-dir BIN``): it leaves the cluster running
detached and records the pids in ``DIR/state.json``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.kube import STATE_FILE, K8sTestEnv, K8sTestEnvError, bin_dir


def _up(base_dir: Path, bin_path: Path) -> int:
    if (base_dir / STATE_FILE).exists():
        previous = K8sTestEnv.attach(base_dir)
        if previous.running() and previous.ready():
            print(f"already running in {base_dir}", file=sys.stderr)
            print(previous.kubeconfig)
            return 0
        print(f"clearing a stopped or broken environment in {base_dir}", file=sys.stderr)
        previous.stop()
    started = time.monotonic()
    try:
        env = K8sTestEnv.start(base_dir, bin_path, keep_running=True)
    except K8sTestEnvError as exc:
        logs = base_dir / "logs"
        hint = f"\n(every process is stopped; logs kept in {logs})" if logs.is_dir() else ""
        print(f"k8s-testenv: {exc}{hint}", file=sys.stderr)
        return 1
    print(
        f"ready in {time.monotonic() - started:.1f}s: {env.server}, "
        f"{len(env.node_names)} fake nodes; logs in {env.base_dir / 'logs'}",
        file=sys.stderr,
    )
    print(env.kubeconfig)
    return 0


def _down(base_dir: Path) -> int:
    if not (base_dir / STATE_FILE).exists():
        print(f"no test environment in {base_dir}", file=sys.stderr)
        return 0
    env = K8sTestEnv.attach(base_dir)
    alive = [(name, pid) for name, pid, running in env.processes() if running]
    env.stop()
    left = [(name, pid) for name, pid, running in env.processes() if running]
    if left:
        print(f"still running: {left}", file=sys.stderr)
        return 1
    stopped = ", ".join(f"{name} ({pid})" for name, pid in alive) or "nothing was running"
    print(f"stopped: {stopped}; removed {base_dir}", file=sys.stderr)
    return 0


def _status(base_dir: Path) -> int:
    if not (base_dir / STATE_FILE).exists():
        print(f"not running (no test environment in {base_dir})")
        return 3
    env = K8sTestEnv.attach(base_dir)
    for name, pid, alive in env.processes():
        print(f"{name:<24} pid {pid:<8} {'running' if alive else 'exited'}")
    ready = env.server != "" and env.ready()
    print(f"api server  {env.server or '-'} {'ready' if ready else 'not ready'}")
    print(f"kubeconfig  {env.kubeconfig}")
    return 0 if env.running() and ready else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.kube_cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start detached; print the kubeconfig path")
    up.add_argument("dir", type=Path)
    up.add_argument("--bin-dir", type=Path, help="default: the build cache")
    commands.add_parser("down", help="stop the processes and remove DIR").add_argument(
        "dir", type=Path
    )
    commands.add_parser("status", help="show the processes").add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    base_dir: Path = args.dir.resolve()
    try:
        if args.command == "up":
            return _up(base_dir, args.bin_dir or bin_dir())
        if args.command == "down":
            return _down(base_dir)
        return _status(base_dir)
    except K8sTestEnvError as exc:
        print(f"k8s-testenv: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
