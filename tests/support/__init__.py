"""The one harness of the tests and the benchmarks.

What both need to start and end, written once: a free port (``ports``), the processes started
and how to end them and check nothing outlived the run (``processes``), a slotpool server in a
thread or as its own process that can be killed and started again (``server``), a throwaway
PostgreSQL (``postgres``), the Kubernetes test cluster and its agent-starting kubelet (``kube``,
``kubelet``) and an in-memory ``PodRuntime`` (``fake_runtime``). The benchmarks import it as
``tests.support`` (they run as ``python -m bench.<scenario>`` from the repository's root).
"""
