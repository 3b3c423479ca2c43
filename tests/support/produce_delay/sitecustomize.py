"""Imported by Python at start-up when this directory is on PYTHONPATH (see `__init__.py`):
delays each aiokafka produce request by MENTORNET_TEST_PRODUCE_DELAY_S seconds. Test-only."""

from __future__ import annotations

import asyncio
import os
from typing import Any

DELAY = float(os.environ.get("MENTORNET_TEST_PRODUCE_DELAY_S") or 0)

if DELAY > 0:
    from aiokafka.producer.sender import Sender

    _send = Sender._send_produce_req

    async def _send_late(self: Sender, node_id: int, batches: Any) -> None:
        await asyncio.sleep(DELAY)
        await _send(self, node_id, batches)

    Sender._send_produce_req = _send_late
