"""The CloudEvents Kafka protocol binding, by the book: the mode is chosen by `content-type`.

Records are written and read with the official SDK (`cloudevents`), not only with our own code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as sdk
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from services.registry import SERVICES
from shared.contract.envelope import STRUCTURED, CloudEvent, Rejected, content_mode, decode_record
from shared.contract.events import EnrolmentEnded
from shared.contract.signature import sign
from shared.ops.schemas import asyncapi_document
from shared.runtime.db.outbox import OutboxRecord

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
DATA = {"person_id": "p-1"}


def sdk_event(**attributes: Any) -> SdkEvent:
    return SdkEvent(
        attributes={
            "specversion": "1.0",
            "id": "off-1",
            "source": "hr/workday",
            "type": "person-offboarded",
            "time": NOW,
            "datacontenttype": "application/json",
            "tenantid": "acme",
            **attributes,
        },
        data=dict(DATA),
    )


def headers_of(message: sdk.KafkaMessage) -> list[tuple[str, bytes]]:
    return list(message.headers.items())


def decode(message: sdk.KafkaMessage, **options: Any) -> CloudEvent:
    return decode_record(
        message.value, headers_of(message), topic="person-offboarded", key=b"p-1", **options
    )


def egress_record(traceparent: str | None = None) -> OutboxRecord:
    event = CloudEvent.new(
        "enrolment-ended",
        "mentornet/profiles",
        "acme",
        EnrolmentEnded(program_id="prog", person_id="p-1"),
        id="e-1",
        time=NOW,
    )
    if traceparent:
        event = event.model_copy(update={"traceparent": traceparent})
    return OutboxRecord.of_event("enrolment-ended", "acme:prog", event)


def test_our_records_are_structured_with_the_content_type_and_nothing_binary() -> None:
    trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    record = egress_record(traceparent=trace)
    assert dict(record.headers) == {
        "content-type": STRUCTURED.encode(),
        "traceparent": trace.encode(),
    }
    assert not [name for name, _ in record.headers if name.startswith("ce_")]


def test_the_sdk_reads_our_records_as_structured_events() -> None:
    record = egress_record()
    message = sdk.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    for event in (sdk.from_structured_event(message), sdk.from_kafka_event(message)):
        assert event.get_id() == "e-1"
        assert event.get_type() == "enrolment-ended"
        assert event.get_source() == "mentornet/profiles"
        assert event.get_extension("tenantid") == "acme"
        assert event.get_data() == json.loads(record.value)["data"]


def test_the_sdk_structured_and_binary_records_are_accepted() -> None:
    for message in (sdk.to_structured_event(sdk_event()), sdk.to_binary_event(sdk_event())):
        event = decode(message)
        assert (event.id, event.tenantid, event.data.person_id) == ("off-1", "acme", "p-1")
    binary = sdk.to_binary_event(sdk_event())
    assert content_mode(headers_of(binary)) == "binary"
    assert dict(headers_of(binary))["content-type"] == b"application/json"


def test_the_content_type_decides_and_stray_ce_headers_are_ignored_in_structured_mode() -> None:
    message = sdk.to_structured_event(sdk_event())
    stray = [*headers_of(message), ("ce_specversion", b"0.3"), ("ce_type", b"mentor-registered")]
    assert content_mode(stray) == "structured"
    assert decode_record(message.value, stray, topic="person-offboarded").id == "off-1"


def test_records_without_a_content_type_are_read_as_before() -> None:
    structured = JSONFormat().write(sdk_event())
    assert content_mode([]) == "structured"
    assert decode_record(structured, [], topic="person-offboarded").id == "off-1"
    binary = sdk.to_binary_event(sdk_event())
    legacy = [(k, v) for k, v in headers_of(binary) if k != "content-type"]
    assert content_mode(legacy) == "binary"
    assert decode_record(binary.value, legacy, topic="person-offboarded").id == "off-1"


def test_a_content_type_with_parameters_still_names_structured_mode() -> None:
    message = sdk.to_structured_event(sdk_event())
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    assert decode_record(message.value, headers, topic="person-offboarded").id == "off-1"


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        ([("content-type", b"application/cloudevents+avro")], b"\x00\x01"),
        ([("content-type", b"application/cloudevents-batch+json")], b"[]"),
        (
            [*headers_of(sdk.to_binary_event(sdk_event()))[:-1], ("content-type", b"text/plain")],
            b'{"person_id":"p-1"}',
        ),
    ],
)
def test_a_format_other_than_json_is_refused_by_name(
    headers: list[tuple[str, bytes]], value: bytes
) -> None:
    filtered = [
        (k, v) for k, v in headers if not (k == "content-type" and v == b"application/json")
    ]
    with pytest.raises(Rejected) as refused:
        decode_record(value, filtered, topic="person-offboarded")
    assert refused.value.code == "unsupported_content_type"
    assert "content-type" in refused.value.reason


def test_a_signed_binary_record_is_checked_on_its_headers() -> None:
    key = b"acme-secret"
    envelope = {
        "id": "off-1",
        "source": "hr/workday",
        "type": "person-offboarded",
        "time": "2026-12-06T09:00:00Z",
        "tenantid": "acme",
        "data": DATA,
    }
    message = sdk.to_binary_event(sdk_event(signature=sign(envelope, key)))
    event = decode(message, signing_keys={"acme": key}, now=NOW)
    assert event.id == "off-1"
    forged = sdk.to_binary_event(sdk_event(signature="sha256=" + "0" * 64))
    with pytest.raises(Rejected) as refused:
        decode(forged, signing_keys={"acme": key}, now=NOW)
    assert refused.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("service", "path"), [("profiles", "/events"), ("notifications", "/answer")]
)
def test_the_http_endpoints_are_in_the_services_api_docs(service: str, path: str) -> None:
    assert service in SERVICES
    channels = asyncapi_document(service)["channels"]
    described = [c for c in channels.values() if c.get("address") == path]
    assert described and path in described[0]["description"]


def test_a_whole_event_sent_as_application_json_is_still_read_as_before() -> None:
    """Without `ce_specversion` a record cannot be binary: its value is the whole event."""
    message = sdk.to_structured_event(sdk_event())
    headers = [("content-type", b"application/json")]
    assert content_mode(headers) == "structured"
    assert decode_record(message.value, headers, topic="person-offboarded").id == "off-1"


def test_a_valueless_ce_header_on_a_structured_record_is_ignored_like_the_others() -> None:
    message = sdk.to_structured_event(sdk_event())
    headers: list[tuple[str, Any]] = [*headers_of(message), ("ce_source", None)]
    assert decode_record(message.value, headers, topic="person-offboarded").id == "off-1"


def test_binary_data_of_another_type_is_refused_for_its_type_before_its_bytes() -> None:
    attributes = [
        (k, v) for k, v in headers_of(sdk.to_binary_event(sdk_event())) if k != "content-type"
    ]
    for headers in (
        [*attributes, ("content-type", b"text/plain")],
        [("content-type", b"text/plain"), ("content-type", b"application/json"), *attributes],
    ):
        with pytest.raises(Rejected) as refused:
            decode_record(b"hello", headers, topic="person-offboarded")
        assert refused.value.code == "unsupported_content_type"
