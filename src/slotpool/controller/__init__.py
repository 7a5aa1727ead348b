"""The pool controller: observe -> decide -> act per pool, the sweeper, and what runs them in the
background. Above the services (it uses them), below the API and the CLI (they start it)."""
