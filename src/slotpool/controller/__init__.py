"""The pool controller: observe -> decide -> act per pool, the sweeper, and what runs them in the
background. Above the services (it uses them), below the API and the CLI (they start it).

``orchestration.py`` runs the loops (a worker per pool, the watches, the pool listing, the orphan
sweep); ``reconciler.py`` is one pass, a pipeline of values through ``inventory.py``,
``domain.scaling.plan``, ``executor.py`` and ``record.py`` (their values in ``types.py``);
``assembly.py`` builds the two into the ``PoolController`` the API holds; ``sweeper.py`` is the
time-driven bookkeeping of tasks and agents."""
