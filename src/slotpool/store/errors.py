"""What the store refuses, in terms the services translate into API errors."""


class Conflict(Exception):
    """A uniqueness rule or a concurrent change refused the write."""
