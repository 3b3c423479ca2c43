"""Dead letters: a rejected record is republished, bytes and headers untouched, with the reason.

Added headers (all UTF-8): dlq-reason-code, dlq-reason, dlq-topic, dlq-partition, dlq-offset,
dlq-service, dlq-time. They leave through the outbox, in the transaction of their batch, so each
rejected record is answered exactly once. `mentornet dlq replay` sends it back to dlq-topic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.contract.topics import dead_letter_topic
from shared.runtime.db.outbox import OutboxRecord


def dead_letter(record: Any, service: str, code: str, reason: str) -> OutboxRecord:
    """The dead-letter record for `record` (an aiokafka ConsumerRecord)."""
    added = {
        "dlq-reason-code": code,
        "dlq-reason": reason,
        "dlq-topic": record.topic,
        "dlq-partition": str(record.partition),
        "dlq-offset": str(record.offset),
        "dlq-service": service,
        "dlq-time": datetime.now(UTC).isoformat(),
    }
    headers = tuple(record.headers or ()) + tuple((k, v.encode()) for k, v in added.items())
    return OutboxRecord(dead_letter_topic(service), record.key, record.value or b"", headers)
