"""The pool controller (``slotpool.controller``): how fast it reacts, how it copes with a burst
on a real cluster, and what one resync pass over many pools costs.

Four parts, each with a baseline from the same run (one module each; ``report`` writes them):

1. **reaction** (``reaction``): an in-process server (``tests/support/server.py``
   ``live_server``, SQLite in a temporary directory, ``local_runtime=False``) whose runtime is
   ``FakeRuntime`` (``tests/support/fake_runtime.py``), handed to ``create_app``: it stamps
   ``time.perf_counter()`` when ``create_agent`` is called and reports every Pod ``Running``, but no
   agent ever registers, so a k8s pool with ``slots_per_pod=1``, ``min_replicas=0`` needs a new
   Pod for every queued task. N tasks are submitted one after the other and each one is timed
   from ``POST /api/v1/tasks`` (sent, and returned) to the controller's ``create_agent`` call. The
   pool is written to the database before the server starts, so its worker exists from the
   start. Run with ``pod_sync_seconds=30`` (only the event wake-up can trigger the create) and
   with the default 1.0. Then a pool created through the API while the server runs gets one
   task, and the time to its first ``create_agent`` is taken.
2. **burst** (``burst``): the test cluster of ``tests/support/kube.py`` (etcd, kube-apiserver,
   scheduler, controller-manager, kwok, 3 fake 4-CPU Nodes of 110 Pods). ``controller`` rounds:
   a server with ``kubeconfig`` and ``kube_requests_per_second`` (50 by default) gets an empty
   k8s pool (4 slots per Pod, min 0, max 100, 10m CPU and 16Mi requested), then 400 tasks at once
   (16 connections); the time is from the first POST to the 100th Pod of the pool ``Running``
   (kwok plays the kubelet; the tasks stay queued, no agent runs). ``direct`` rounds: 100 bare
   Pods from the same manifest builder, created with a lightkube ``AsyncClient`` behind the
   runtime's ``TokenBucket`` at the same rate (``bench.harness.cluster.creator``), from the first
   create to the 100th Pod ``Running``. Rounds alternate (A B, B A, ...) after one warm-up each;
   everything is deleted between rounds. One more controller round is instrumented (wall time
   of the controller's steps, timeline of its passes) and one runs under cProfile in the
   server's thread.
2b. **burst-queued** (``burst``): the same cluster (one of its own) and direct rounds, but the
   controller alone: a server with ``pod_sync_seconds=3600`` (no periodic pass), a new empty pool
   per round, its first pass awaited and one ``sync-deployment`` with the queue empty; then the
   tasks are inserted in one transaction by the bench's own ``Store`` (rows shaped as
   ``TaskService.submit`` builds them; the server is not notified), it is asserted that the pool
   has no Pod yet, and the clock runs from one ``POST .../sync-deployment`` (a controller pass
   at once) to the 100th Pod ``Running``; the pool's events give its creating passes.
3. **resync** (``resync``): in-process, no server: a ``Store`` on SQLite and on PostgreSQL
   (``tests/support/postgres.py``) with 1,000 k8s pools, each with 10 registered Pods (the
   agents' ``register``) that ``FakeRuntime`` reports ``Running``; one ``run_pass(pool_id,
   check_secret=False)`` per pool, sequentially (a first pass, whose Secret check is due, and a
   steady one) and in ``asyncio.gather`` batches, against the same number of plain
   ``uow.pods.of_pool()`` reads (each in a ``store.reading()`` unit of work). Wall and CPU time
   (``time.process_time``; PostgreSQL's server processes are counted apart), RSS before/after
   and its peak (``VmHWM``, reset through ``/proc/self/clear_refs``), and the tracemalloc peak
   in a separate pass. Then the same pass for one pool whose 10 live Pods come with 0, 100 and
   1,000 ended Pods' rows.

Results are printed and written to ``bench/CONTROLLER.md`` with the machine's details. Run it
with ``scripts/bench controller`` or ``.venv/bin/python -m bench.controller --help``.
"""
