"""Free text as slotpool accepts it: any string but one with a NUL character or a lone surrogate.

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
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON can spell a lone surrogate (\ud800); no database or Pod can store one.
        raise ValueError("must be valid Unicode: a lone surrogate (\\ud800-\\udfff)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(no_nul)]
