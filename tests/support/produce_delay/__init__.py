"""Slow Kafka produce requests in a service process, to see what waits for Kafka's answer.

`produce_delay_env(seconds)` is the environment that makes a service process (started as usual,
by `running` or `Services`) import this directory's `sitecustomize` at start-up: each produce
request of its aiokafka producers then leaves `seconds` late. Nothing else changes; the records
reach Kafka all the same, only later. An endpoint that answers before Kafka acknowledged what it
published answers, under this delay, before Kafka holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "MENTORNET_TEST_PRODUCE_DELAY_S"


def produce_delay_env(seconds: float) -> dict[str, str]:
    """Environment variables for a service process whose produce requests leave late."""
    path = [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path), VARIABLE: str(seconds)}
