"""Contract v1: every rejection reason, binary mode, forward compatibility, schemas."""

from __future__ import annotations

import json
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
    assert decode_record(raw, topic="mentor-registered", signing_keys={"acme": b"k"}).id == "evt-1"
    with pytest.raises(Rejected) as rejected:
        decode_record(raw, topic="mentor-registered", signing_keys={"acme": b"other"})
    assert rejected.value.code == "bad_signature"
    assert (
        decode_record(raw, topic="mentor-registered", signing_keys={"globex": b"k"}).id == "evt-1"
    )
