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


def mentor_data(person: str, program: str = "prog-1", **extra: Any) -> dict[str, Any]:
    """A valid `mentor-registered` payload, as an HR system fills it."""
    return {
        "person_id": person,
        "program_id": program,
        "display_name": "Ada Lovelace",
        "email": f"{person}@example.org",
        "languages": ["en", "fr"],
        "timezone": "Europe/Paris",
        "expertise": [{"topic": "public speaking", "level": 4}],
        "capacity": 2,
        **extra,
    }


def ingress(
    topic: str, tenant: str, key: str, data: dict[str, Any], **envelope: Any
) -> tuple[str, bytes, bytes]:
    """A hand-written event as a record to publish (topic, key, value)."""
    return (topic, key.encode(), json.dumps(cloud_event(topic, tenant, data, **envelope)).encode())


def of_tenant(tenant: str) -> Callable[[Any], bool]:
    """A `keep` filter for TopicReader: the records of `tenant` (anything unreadable is not)."""

    def keep(record: Any) -> bool:
        try:
            return json.loads(record.value).get("tenantid") == tenant
        except ValueError:
            return False

    return keep


def enrolment_updated(
    tenant: str, role: str, person: str, program: str = "prog", **extra: Any
) -> tuple[str, bytes, bytes]:
    """A canonical `enrolment-updated`, as profiles publishes it (topic, key, value), for tests
    that feed matching directly."""
    data: dict[str, Any] = {
        "program_id": program,
        "person_id": person,
        "role": role,
        "display_name": person,
        "email": f"{person}@example.org",
        "languages": ["en"],
        "timezone": "Europe/Paris",
        "registered_at": "2026-01-01T00:00:00Z",
    }
    if role == "mentor":
        data |= {"expertise": [{"topic": "python", "level": 4}], "capacity": 1}
    else:
        data |= {"goals": [{"topic": "python", "priority": 1}]}
    event = cloud_event("enrolment-updated", tenant, data | extra, source="mentornet/profiles")
    return ("enrolment-updated", f"{tenant}:{program}".encode(), json.dumps(event).encode())
