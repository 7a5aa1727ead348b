"""Runtimes: the only code that starts and stops "pods" (Kubernetes Pods, or local processes)."""
