"""The profiles domain: what an enrolment is and which registration wins."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from shared.contract.envelope import CloudEvent
from shared.contract.events import (
    EnrolmentEnded,
    EnrolmentUpdated,
    MenteeRegistered,
    MentorRegistered,
)

SOURCE = "mentornet/profiles"
_IDS = uuid.UUID("0b6f4c52-5a47-4d0e-9c55-6d656e746f72")


def derived_id(cause: CloudEvent, what: str) -> str:
    """A stable id for an event caused by `cause`: reprocessing the cause yields the same id."""
    return str(uuid.uuid5(_IDS, f"{cause.tenantid}|{cause.source}|{cause.id}|{what}"))


def latest_registrations(events: Iterable[CloudEvent]) -> list[CloudEvent]:
    """Keep, per (tenant, person, program), the registration with the latest time (then id)."""
    latest: dict[tuple[str, str, str], CloudEvent] = {}
    for event in events:
        data = event.data
        key = (event.tenantid, data.person_id, data.program_id)
        current = latest.get(key)
        if current is None or (event.time, event.id) > (current.time, current.id):
            latest[key] = event
    return list(latest.values())


@dataclass(frozen=True)
class EnrolmentRow:
    tenant_id: str
    registration: MentorRegistered | MenteeRegistered
    cause: CloudEvent

    @property
    def role(self) -> str:
        return "mentor" if isinstance(self.registration, MentorRegistered) else "mentee"

    @classmethod
    def of(cls, event: CloudEvent) -> EnrolmentRow:
        return cls(event.tenantid, event.data, event)

    def updated_event(self) -> CloudEvent:
        r = self.registration
        data = EnrolmentUpdated(
            program_id=r.program_id,
            person_id=r.person_id,
            role=self.role,  # type: ignore[arg-type]
            display_name=r.display_name,
            email=r.email,
            languages=r.languages,
            timezone=r.timezone,
            department=r.department,
            seniority=r.seniority,
            manager_id=r.manager_id,
            expertise=getattr(r, "expertise", []),
            goals=getattr(r, "goals", []),
            capacity=getattr(r, "capacity", 0),
            registered_at=self.cause.time,
        )
        return CloudEvent.new(
            "enrolment-updated",
            SOURCE,
            self.tenant_id,
            data,
            cause=self.cause,
            id=derived_id(self.cause, "enrolment-updated"),
        )


def ended_event(cause: CloudEvent, program_id: str) -> CloudEvent:
    data = EnrolmentEnded(program_id=program_id, person_id=cause.data.person_id)
    return CloudEvent.new(
        "enrolment-ended",
        SOURCE,
        cause.tenantid,
        data,
        cause=cause,
        id=derived_id(cause, f"enrolment-ended:{program_id}"),
    )
