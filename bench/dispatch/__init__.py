"""Task dispatch of one slotpool server, on SQLite and PostgreSQL, with real agent processes.

Per backend, ``slotpool server`` runs in its own process with a local pool of 2 agents x 8 slots
(the server's local runtime starts the agents as processes on this host). Then:

* ``plain``, the dispatch latency as an operator sees it: sequentially, ``date +%s.%N`` as a
  task with nothing else running, every agent idle in its long-poll claim. Latency = the time
  ``date`` printed (the step's start, same machine clock) minus ``time.time()`` just before the
  POST. Also the server's part (``results[0].started_at - created_at``: submission to delivery of
  the step in a claim answer) and the agent's (delivery to ``date`` reading the clock).
* ``one idle slot``: the same, with 15 of the 16 slots held by waiting tasks, so every task
  lands in the one idle slot, whose agent claims exactly that slot each time.
* ``throughput``: 600 tasks of ``true`` submitted as fast as a few client threads can, then
  completions per second = tasks / (last ``finished_at`` - first submission), the submission rate
  alone (the ceiling), the CPU time each process took meanwhile and any task that did not succeed.

Baselines from the same run: ``date +%s.%N`` spawned by Python directly and through
``/bin/sh -c`` (what an agent runs), and ``GET /healthz`` on the same server and connection.

A sequential phase stops early when a task waits more than ``STALL_SECONDS`` for its step to
start (a stall); its samples, stalls included, are reported one by one. Results are printed and
written to ``bench/DISPATCH.md`` with the machine's details (``measure`` runs it, ``report``
writes it). ``.venv/bin/python -m bench.dispatch --help`` lists the options; ``scripts/bench
dispatch`` runs it after making sure PostgreSQL is installed.
"""
