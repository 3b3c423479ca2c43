"""Big data out of the collector's full passes while a block holds it, handed back after."""

from __future__ import annotations

import gc
import uuid

import pytest

from services.matching.handlers import _random_ids
from shared.runtime import heap


def test_a_block_keeps_what_is_alive_out_of_full_collections_until_the_last_block_ends() -> None:
    assert gc.get_freeze_count() == 0
    with heap.long_lived():
        entered = gc.get_freeze_count()
        assert entered > 0, "what was alive on entry is frozen"
        data = [[f"mentee {i}"] for i in range(1000)]  # lists: tracked by the collector
        heap.keep()
        assert gc.get_freeze_count() >= entered + len(data), "keep() freezes what was read since"
        with heap.long_lived():
            pass
        assert gc.get_freeze_count() >= entered + len(data), "an inner block hands nothing back"
    assert gc.get_freeze_count() == 0, "the last block hands every object back"


def test_the_objects_are_handed_back_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), heap.long_lived():
        raise RuntimeError("the solve failed")
    assert gc.get_freeze_count() == 0


def test_keep_outside_a_block_is_refused() -> None:
    with pytest.raises(AssertionError):
        heap.keep()
    assert gc.get_freeze_count() == 0


def test_proposal_ids_are_distinct_random_uuids_from_one_read() -> None:
    ids = list(_random_ids(1000))
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert all(uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert list(_random_ids(0)) == []
