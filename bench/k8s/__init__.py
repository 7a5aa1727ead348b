"""Pod creation through slotpool's Kubernetes runtime against the same client creating Pods.

One run starts the test cluster of ``tests/support/kube.py`` (etcd, kube-apiserver, scheduler,
controller-manager and kwok with 3 fake Nodes of 4 CPUs) and, in one namespace that enforces the
``restricted`` Pod Security Standard, creates batches of Pods (100 by default) two ways:

* ``runtime``: ``KubernetesRuntime.create_pod(manifest)``, the manifest from the one Pod builder
  (``slotpool.domain.manifest.build_pod_manifest``), i.e. what the runtime's ``create_agent`` does
  once it has built the manifest from the agent spec: the manifest is turned into lightkube's
  ``Pod`` and checked for dropped fields, the call goes through the runtime's token bucket and
  error mapping, and the answer becomes a ``RuntimePod``;
* ``direct``: the same lightkube ``AsyncClient`` (one client for both) sending ``client.create``
  with ``Pod`` objects made from the same manifests before the clock starts, behind a
  ``TokenBucket`` of the same rate (the runtime's own class), i.e. the least a caller must do.

Both at a rate limit (50 requests/s by default) and with the limit off (``math.inf``). A batch is
issued at once (``asyncio.gather`` of the creates). Per round it measures the wall time to issue
every create (first call to last answer), the CPU time of the thread that issues them (the watch
below runs in a thread of its own so it is not counted; the whole process's CPU is recorded too),
and, per Pod, the time from its create call to the watch seeing it ``Running`` (kwok plays the
kubelet), p50/p99 and the time until all are Running. Rounds alternate between the two ways
(A B, B A, A B, ...) so the machine's noise hits both alike; every Pod is deleted (grace 0) and
gone before the next round. One unmeasured warm-up round per way opens the connections first.

After the measured rounds, the runtime's own per-Pod work (manifest to ``Pod`` with the
round-trip check, answer to ``RuntimePod``) is timed in isolation, and one more round per way
runs under cProfile (its numbers are not used) to show where the CPU goes.

Results are printed and written to ``bench/K8S.md`` with the machine's details (``rounds``
measures, ``report`` writes). Run it with ``scripts/bench k8s`` or
``.venv/bin/python -m bench.k8s --help``.
"""
