"""Use cases: each public method is one unit of work against the store (and, later, the runtime).

Routes and the CLI call these; they never touch the database or the cluster themselves.
"""
