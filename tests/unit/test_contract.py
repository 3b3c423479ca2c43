"""Contract v1: every rejection reason, binary mode, forward compatibility, schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contract import EVENT_MODELS, Rejected, decode_record
from shared.contract.events import MentorRegistered
from shared.contract.schemas import event_schema

pytestmark = pytest.mark.unit


def valid(**overrides: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "hr/workday",
        "type": "mentor-registered",
        "time": "2026-03-01T09:00:00+01:00",
        "datacontenttype": "application/json",
        "tenantid": "acme",
        "data": {
            "person_id": "p-1",
            "program_id": "prog",
            "display_name": "Ada",
            "email": "ada@acme.example",
            "languages": ["EN", "fr"],
            "timezone": "Europe/Paris",
            "expertise": [{"topic": "python", "level": 5}],
            "capacity": 2,
        },
    }
    event.update(overrides)
    return event


def code_of(
    value: bytes, topic: str = "mentor-registered", key: bytes | None = b"p-1", headers: Any = ()
) -> str:
    with pytest.raises(Rejected) as rejected:
        decode_record(value, headers, topic=topic, key=key)
    assert rejected.value.reason
    return rejected.value.code


def test_a_valid_event_decodes_to_its_typed_payload() -> None:
    event = decode_record(json.dumps(valid()).encode(), topic="mentor-registered", key=b"acme:p-1")
    assert isinstance(event.data, MentorRegistered)
    assert event.data.languages == ["en", "fr"]
    assert event.correlation_id == "evt-1"


def test_unknown_fields_are_tolerated() -> None:
    body = valid(futureattr="x")
    body["data"]["favourite_colour"] = "blue"
    assert (
        decode_record(json.dumps(body).encode(), topic="mentor-registered").data.person_id == "p-1"
    )


def test_binary_mode_reads_ce_headers() -> None:
    body = valid()
    headers = [
        (f"ce_{k}", str(v).encode())
        for k, v in body.items()
        if k not in ("data", "datacontenttype")
    ]
    event = decode_record(json.dumps(body["data"]).encode(), headers, topic="mentor-registered")
    assert event.tenantid == "acme" and event.data.capacity == 2


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"\xff\xfe", "invalid_utf8"),
        (b"{", "not_json"),
        (b'"just a string"', "not_an_object"),
        (b"[" * 3000 + b"]" * 3000, "too_deep"),
        (json.dumps({"a": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}).encode(), "too_deep"),
        (json.dumps({"a": list(range(5000))}).encode(), "array_too_long"),
        (b" " * (300 * 1024), "too_large"),
        (json.dumps(valid(specversion="0.3")).encode(), "unknown_specversion"),
        (
            json.dumps({k: v for k, v in valid().items() if k != "specversion"}).encode(),
            "missing_field",
        ),
        (json.dumps(valid(type="mentor-fired")).encode(), "unknown_type"),
        (json.dumps(valid(type="mentee-registered")).encode(), "type_mismatch"),
        (
            json.dumps({k: v for k, v in valid().items() if k != "tenantid"}).encode(),
            "missing_field",
        ),
        (json.dumps(valid(time="yesterday")).encode(), "invalid_field"),
    ],
)
def test_each_kind_of_bad_input_has_its_code(value: bytes, code: str) -> None:
    assert code_of(value) == code


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("languages", [], "data.languages"),
        ("languages", ["xx"], "data.languages.0"),
        ("timezone", "Mars/Olympus", "data.timezone"),
        ("capacity", 0, "data.capacity"),
        ("capacity", "two", "data.capacity"),
        ("expertise", [{"topic": "python", "level": 9}], "data.expertise.0.level"),
        ("email", "not-an-address", "data.email"),
        ("seniority", 11, "data.seniority"),
    ],
)
def test_invalid_fields_are_named_in_the_reason(field: str, value: Any, where: str) -> None:
    body = valid()
    body["data"][field] = value
    with pytest.raises(Rejected) as rejected:
        decode_record(json.dumps(body).encode(), topic="mentor-registered")
    assert rejected.value.code == "invalid_field"
    assert f"'{where}'" in rejected.value.reason


def test_a_key_from_another_tenant_or_person_is_refused() -> None:
    raw = json.dumps(valid()).encode()
    assert code_of(raw, key=b"globex:p-1") == "tenant_mismatch"
    assert code_of(raw, key=b"p-2") == "key_mismatch"


def test_header_floods_are_refused() -> None:
    assert (
        code_of(json.dumps(valid()).encode(), headers=[(f"h{i}", b"x") for i in range(100)])
        == "too_many_headers"
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_escape_as_anything_but_a_rejection(value: bytes) -> None:
    try:
        decode_record(value, topic="mentor-registered")
    except Rejected as rejected:
        assert rejected.code and rejected.reason


def test_every_event_has_a_json_schema_with_its_payload() -> None:
    for event_type, model in EVENT_MODELS.items():
        schema = event_schema(event_type)
        assert schema["properties"]["type"] == {"const": event_type, "title": "Type"}
        assert set(model.model_json_schema().get("required", [])) <= set(
            schema["properties"]["data"].get("required", [])
        )
        assert "tenantid" in schema["required"]


def test_signatures_follow_the_documented_recipe() -> None:
    """The test signs with its own code, exactly as docs/contract.md tells publishers to."""
    import hashlib
    import hmac

    event = valid()
    body = json.dumps(event["data"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = "\n".join(
        [event["id"], event["source"], event["type"], event["time"], event["tenantid"], body]
    )
    event["signature"] = "sha256=" + hmac.new(b"k", text.encode(), hashlib.sha256).hexdigest()
    raw = json.dumps(event).encode()
    now = SIGNED_AT + timedelta(hours=1)
    keys = {"acme": b"k"}
    assert decode_record(raw, topic="mentor-registered", signing_keys=keys, now=now).id == "evt-1"
    with pytest.raises(Rejected) as rejected:
        decode_record(raw, topic="mentor-registered", signing_keys={"acme": b"other"}, now=now)
    assert rejected.value.code == "bad_signature"
    assert (
        decode_record(raw, topic="mentor-registered", signing_keys={"globex": b"k"}).id == "evt-1"
    )


SIGNED_AT = datetime(2026, 3, 1, 8, tzinfo=UTC)  # valid()'s time


def _signed(event: dict[str, Any], key: bytes) -> bytes:
    from shared.contract.signature import sign

    return json.dumps({**event, "signature": sign(event, key)}).encode()


def test_a_signed_event_outside_the_freshness_window_is_refused_as_stale() -> None:
    raw, keys = _signed(valid(), b"k"), {"acme": b"k"}
    week = timedelta(days=7)
    for now in (SIGNED_AT + week - timedelta(minutes=1), SIGNED_AT - timedelta(minutes=4)):
        decode_record(raw, topic="mentor-registered", signing_keys=keys, now=now)
    for now in (SIGNED_AT + week + timedelta(minutes=1), SIGNED_AT - timedelta(minutes=6)):
        with pytest.raises(Rejected) as rejected:
            decode_record(raw, topic="mentor-registered", signing_keys=keys, now=now)
        assert rejected.value.code == "stale_signature"
    shorter = {"signature_max_age": timedelta(hours=1)}
    with pytest.raises(Rejected):
        decode_record(
            raw,
            topic="mentor-registered",
            signing_keys=keys,
            now=SIGNED_AT + 2 * shorter["signature_max_age"],
            **shorter,
        )


def test_signing_keys_apply_to_the_topics_outsiders_publish_never_to_internal_ones() -> None:
    """Only mentornet writes its internal topics, and it signs nothing: a tenant's key must not
    dead-letter matching's and notifications' own inputs."""
    from shared.contract.topics import TOPICS

    keys = {"acme": b"k"}
    internal = {
        "specversion": "1.0",
        "id": "e-2",
        "source": "mentornet/profiles",
        "type": "enrolment-ended",
        "time": "2026-03-01T09:00:00Z",
        "tenantid": "acme",
        "data": {"program_id": "prog", "person_id": "p-1"},
    }
    assert not TOPICS["enrolment-ended"].ingress
    assert decode_record(json.dumps(internal).encode(), topic="enrolment-ended", signing_keys=keys)
    for topic in ("mentor-registered", "match-responded", "program-configured"):
        assert TOPICS[topic].ingress
    with pytest.raises(Rejected) as rejected:  # unsigned on an outsiders' topic
        decode_record(json.dumps(valid()).encode(), topic="mentor-registered", signing_keys=keys)
    assert rejected.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("time", "problem"),
    [
        ("0001-01-01T00:00:00+14:00", "between the years 1900 and 9999"),
        ("1899-12-31T23:59:59Z", "between the years 1900 and 9999"),
        ("9999-12-31T23:00:00-05:00", "between the years 1900 and 9999"),
        ("2026-03-01T09:00:00", "UTC offset"),
    ],
)
def test_times_that_cannot_be_stored_or_compared_are_refused(time: str, problem: str) -> None:
    with pytest.raises(Rejected) as rejected:
        decode_record(json.dumps(valid(time=time)).encode(), topic="mentor-registered")
    assert rejected.value.code == "invalid_field"
    assert "'time'" in rejected.value.reason and problem in rejected.value.reason


def test_nul_characters_are_refused_wherever_they_are() -> None:
    """PostgreSQL cannot store U+0000 in text: refuse it before any write, naming the field."""
    body = valid()
    body["data"]["display_name"] = "Ada\u0000"
    raw = json.dumps(body).encode()  # JSON carries it escaped
    assert b"\\u0000" in raw
    with pytest.raises(Rejected) as rejected:
        decode_record(raw, topic="mentor-registered", key=b"p-1")
    assert rejected.value.code == "invalid_field"
    assert "'data.display_name'" in rejected.value.reason and "NUL" in rejected.value.reason
    nul_key = valid()
    nul_key["data"]["x\x00"] = 1
    assert code_of(json.dumps(nul_key).encode()) == "invalid_field"
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"e\x00"), ("ce_source", b"hr")]
    assert code_of(b"{}", headers=headers) == "invalid_field"
    escaped = valid()  # a backslash followed by "u0000" is ordinary text
    escaped["data"]["display_name"] = "Ada \\u0000"
    assert decode_record(json.dumps(escaped).encode(), topic="mentor-registered").data


def test_a_ce_header_without_a_value_is_refused() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_source", None)]
    assert code_of(json.dumps(valid()["data"]).encode(), headers=headers) == "invalid_header"
