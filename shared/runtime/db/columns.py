"""Rows as column arrays: how every batch statement passes its rows to PostgreSQL.

    INSERT INTO t (a, b) SELECT * FROM unnest($1::text[], $2::int[])

takes one array per column; `columns(rows, 2)` turns [("x", 1), ("y", 2)] into
[["x", "y"], [1, 2]], and gives empty arrays for no rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """One list per column of `rows`, each row `width` values long."""
    arrays: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for array, value in zip(arrays, row, strict=True):
            array.append(value)
    return arrays
