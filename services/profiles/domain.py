"""The profiles domain: what an enrolment is and which registration wins."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from shared.contract.envelope import STRUCTURED, CloudEvent
from shared.contract.events import (
    EnrolmentEnded,
    MenteeRegistered,
    MentorRegistered,
)

SOURCE = "mentornet/profiles"
_IDS = uuid.UUID("0b6f4c52-5a47-4d0e-9c55-6d656e746f72")
_ID_PREFIX = _IDS.bytes


def derived_id(cause: CloudEvent, what: str) -> str:
    """A stable id for an event caused by `cause`: reprocessing the cause yields the same id.

    uuid5 of the cause's key, written out by hand (`uuid.UUID` costs more than the hash, and
    this runs for every record of a bulk sync); equal to `str(uuid.uuid5(_IDS, ...))`."""
    name = f"{cause.tenantid}|{cause.source}|{cause.id}|{what}".encode()
    digest = bytearray(hashlib.sha1(_ID_PREFIX + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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

    def updated_data(self, received_at: str) -> str:
        """The canonical payload as JSON: the validated registration plus role, its time and
        when we applied it (`received_at`, ISO 8601: the time to a proposal counts from there,
        not from the HR system's clock), serialised by pydantic once."""
        registration = self.registration.model_dump_json(exclude_none=True)
        return (
            f'{registration[:-1]},"role":"{self.role}"'
            f',"registered_at":"{self.cause.time.isoformat()}"'
            f',"received_at":"{received_at}"}}'
        )

    def updated_bytes(self, data: str) -> bytes:
        """The canonical `enrolment-updated` event, as `CloudEvent.to_bytes` would serialise it,
        around its payload `data` (`updated_data`), written directly: this runs for every record of a bulk sync, and a model built only to
        be serialised cost more than the rest of the event's handling in Python."""
        cause = self.cause
        head = (
            '{"specversion":"1.0","id":"'
            + derived_id(cause, "enrolment-updated")
            + '","source":"'
            + SOURCE
            + '","type":"enrolment-updated","time":"'
            + cause.time.isoformat().replace("+00:00", "Z")
            + '","datacontenttype":"application/json","tenantid":'
            + _text(self.tenant_id)
            + ',"correlationid":'
            + _text(cause.correlation_id)
        )
        if cause.traceparent:
            head += ',"traceparent":' + _text(cause.traceparent)
        return (head + ',"data":' + data + "}").encode()

    def updated_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The Kafka headers of the canonical event's record (`CloudEvent.kafka_headers`)."""
        traceparent = self.cause.traceparent
        if traceparent:
            return (_CONTENT_TYPE, ("traceparent", traceparent.encode()))
        return (_CONTENT_TYPE,)


_CONTENT_TYPE = ("content-type", STRUCTURED.encode())


_text = json.JSONEncoder(ensure_ascii=False).encode  # a JSON string, as `to_bytes` escapes it


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
