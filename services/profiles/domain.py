"""The profiles domain: what an enrolment is and which registration wins."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from shared.contract.envelope import CloudEvent, RawJson
from shared.contract.events import (
    EnrolmentEnded,
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

    def updated_event(self, received_at: datetime) -> CloudEvent:
        """The canonical event: the validated registration plus role, its time and when we
        applied it (`received_at`: the time to a proposal counts from there, not from the HR
        system's clock), serialised by pydantic once (this runs for every record of a bulk sync)."""
        registration = self.registration.model_dump_json(exclude_none=True)
        extra = (
            f',"role":"{self.role}","registered_at":"{self.cause.time.isoformat()}"'
            f',"received_at":"{received_at.isoformat()}"}}'
        )
        return CloudEvent.model_construct(
            id=derived_id(self.cause, "enrolment-updated"),
            source=SOURCE,
            type="enrolment-updated",
            time=self.cause.time,
            tenantid=self.tenant_id,
            correlationid=self.cause.correlation_id,
            traceparent=self.cause.traceparent,
            specversion="1.0",
            datacontenttype="application/json",
            data=RawJson(registration[:-1] + extra),
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
        time=cause.time,  # when the person left: older registrations are ignored downstream
    )
