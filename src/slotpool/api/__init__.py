"""The REST API: thin routers per feature that parse, call a service and shape the answer."""
