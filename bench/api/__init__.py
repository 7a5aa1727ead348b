"""Latency of slotpool's REST API on SQLite and PostgreSQL, next to baselines from the same run.

What it measures, per backend, against a real server in its own process (``slotpool server``, so
the client does not share the server's interpreter lock) holding 1,000 pools that each carry a
realistic configuration (``SEED_RIGHT`` of the API tests, one freeze window included):

* ``list_1000``: ``GET /api/v1/agent-pools?limit=1000``, the largest page an operator can ask for;
* ``config_put``: ``PUT /api/v1/agent-pools/{id}/k8s-config`` on a random pool, new image each time.

Why baselines: an absolute number in milliseconds says little on its own (it moves with the
machine), so the same run also measures what the two operations cannot be cheaper than:

* ``healthz``: ``GET /healthz`` on the same server and connection, the HTTP floor (client, socket,
  uvicorn, FastAPI routing, no database, no authentication);
* ``raw_select_1000``: the rows ``list_1000`` reads (1,000 pools, their windows, the total),
  fetched with the synchronous driver (sqlite3 or psycopg) on one open connection and turned into
  JSON text with ``json.dumps``: the floor of listing without the API;
* ``raw_update``: one ``UPDATE`` of the ``k8s_config`` column plus ``COMMIT``, same driver: the
  floor of saving a configuration.

The ratios (API / raw floor, API / HTTP floor) are the numbers to compare between runs and
machines. Results are printed and written to ``bench/RESULTS.md`` with the machine's details.

Run it with ``scripts/bench`` (it installs PostgreSQL when missing) or
``.venv/bin/python -m bench.api --help`` (``measure`` runs it, ``report`` writes it).
"""
