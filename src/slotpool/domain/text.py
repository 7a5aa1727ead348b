"""Free text as slotpool accepts it: any string but one with a NUL character.

PostgreSQL cannot store NUL in text or JSONB, Kubernetes refuses it in env values and
annotations, and on SQLite it would be stored where PostgreSQL would fail: refusing it at the
edge, with the field's path, keeps both databases and the cluster answering the same way.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StrictStr


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


Text = Annotated[StrictStr, AfterValidator(no_nul)]
