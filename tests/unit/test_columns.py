"""The one helper behind every `unnest(...)` batch statement."""

from __future__ import annotations

import pytest

from shared.runtime.db.columns import columns

pytestmark = pytest.mark.unit


def test_rows_become_columns() -> None:
    assert columns([("x", 1), ("y", 2)], 2) == [["x", "y"], [1, 2]]


def test_no_rows_give_empty_columns() -> None:
    assert columns([], 3) == [[], [], []]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError):
        columns([("x", 1), ("y",)], 2)
