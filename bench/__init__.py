"""slotpool's benchmarks: one module per scenario (``api``, ``dispatch``, ``k8s``,
``controller``), run from the repository's root as ``python -m bench.<scenario>`` (so ``tests``,
whose ``tests.support`` starts the servers, databases and cluster, is importable as it is), and
the harness they share in ``bench.harness``. The recorded results are the Markdown files here."""
