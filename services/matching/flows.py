"""Min-cost flows solved in a child process.

A cohort is solved off the event loop, so probes and Kafka heartbeats go on meanwhile: the
candidate search in a worker thread (numpy releases the GIL for its heavy parts) and each round's
min-cost flow here, in a process of its own, because OR-Tools holds the GIL for the whole solve
(over a second for 50,000 mentees), which would stall the loop from a thread just the same.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from services.matching.domain.criteria import Floats, Ints


class FlowProcess:
    """`cohort.min_cost_assignment` in a child process (a `cohort.Flow`), started when first
    needed and kept for the next cohorts; callable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None

    def __call__(
        self, tails: Ints, mentors: Ints, scores: Floats, rows: int, free: Ints, lowest: float
    ) -> Ints:
        from services.matching.domain.cohort import min_cost_assignment  # OR-Tools: on first use

        with self._lock:
            if self._executor is None:  # spawned, not forked: this process runs threads
                spawn = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(1, mp_context=spawn)
            executor = self._executor
        try:
            future = executor.submit(
                min_cost_assignment, tails, mentors, scores, rows, free, lowest
            )
            return future.result()
        except BrokenProcessPool:  # the child died (out of memory?): a new one next time
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            raise

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
