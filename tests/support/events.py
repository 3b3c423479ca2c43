"""Events as an HR system or a mentoring app writes them by hand, and filters to read them back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def cloud_event(type_: str, tenant: str, data: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode event, written by hand as an HR system would."""
    event = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "hr/test-suite",
        "type": type_,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "tenantid": tenant,
        "data": data,
    }
    event.update(overrides)
    return event


def of_tenant(tenant: str) -> Callable[[Any], bool]:
    """A `keep` filter for TopicReader: the records of `tenant` (anything unreadable is not)."""

    def keep(record: Any) -> bool:
        try:
            return json.loads(record.value).get("tenantid") == tenant
        except ValueError:
            return False

    return keep
