"""Big, long-lived data kept out of the cyclic garbage collector's full passes.

A full collection walks every tracked object and holds the GIL while it does. With a cohort's
tens of thousands of mentees, a program's pool and the process's own modules in memory, one
takes hundreds of milliseconds, and it can start in any thread that allocates (a solve's worker
thread too): meanwhile no thread runs, so the event loop answers no probe and sends no
heartbeat. Measured in the cohort responsiveness test (50,000 mentees, 10,000 mentors): full
collections of 0.1-0.17 s each, several per cohort, none once the data is kept out.

Inside `long_lived()`, `keep()` moves every object alive at that moment out of the collector's
sight (gc.freeze): later passes walk only what was allocated since. When the last block ends,
those objects are handed back to the collector (gc.unfreeze), so the garbage cycles among them
are collected as before. Objects freed by their reference count are freed meanwhile too: only
cycles wait for the block's end.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_open = 0  # blocks inside `long_lived` now (entered from the event loop's thread only)


def keep() -> None:
    """Objects alive now are left out of full collections until every `long_lived` block ends.

    Call it inside such a block, right after reading what the block keeps for long."""
    assert _open, "keep() outside long_lived(): nothing would ever hand the objects back"
    gc.freeze()


@contextmanager
def long_lived() -> Iterator[None]:
    """A block holding big data for seconds: what is alive on entry, and whatever `keep()`
    marks later, is out of the collector's full passes until the last such block ends."""
    global _open
    _open += 1
    try:
        keep()
        yield
    finally:
        _open -= 1
        if not _open:
            gc.unfreeze()


# Young collections once every this many allocations, not every 700: a service handles batches
# of a thousand events, each a few dozen tracked objects alive until the batch's transaction
# ends, so with the default nearly every young collection found them alive and promoted them,
# and full collections followed. Measured on profiles' decode-and-encode loop (60,000 events in
# 1,000-record batches): 1,558 collections at the default, 18 at 20,000, and the loop ~30% faster.
YOUNG_THRESHOLD = 20_000


def tune_for_batches() -> None:
    """Set the collector for a service process (at startup, once): see YOUNG_THRESHOLD. Cyclic
    garbage waits a little longer; nothing else changes, `long_lived` included."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(older, 20), oldest)
