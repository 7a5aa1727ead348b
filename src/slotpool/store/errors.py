"""What the store refuses, in terms the services translate into API errors."""


class Conflict(Exception):
    """A uniqueness rule or a concurrent change refused the write."""


class StaleRevision(Exception):
    """A conditional write found the row at another revision than the one it was given."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the row is at revision {current}")
        self.current = current


class MissingPool(Exception):
    """A row refers to an agent pool that does not exist (its foreign key refused it)."""


class DatabaseUnavailable(Exception):
    """The connection to the database was lost during a unit of work (the database restarted or
    failed over): nothing of it was committed, and the next unit of work connects afresh."""


class TransactionAborted(Exception):
    """The database aborted the unit of work to resolve a conflict with another transaction (a
    deadlock, a serialization failure): nothing of it was committed, and running it again may
    well succeed."""


class ReadOnlyViolation(Exception):
    """A write in a unit of work opened to read (``Store.reading``): a bug, never an answer."""


# PostgreSQL's SQLSTATEs for a transaction it aborted because of another one.
ABORTED_STATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
