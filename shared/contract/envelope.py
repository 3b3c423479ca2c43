"""CloudEvents 1.0 envelope: decoding a Kafka record (structured or binary mode) and encoding ours.

The mode is chosen as the CloudEvents Kafka protocol binding says: a `content-type` header that
starts with `application/cloudevents` means structured mode (the `ce_` headers are then ignored),
any other means binary mode. A record without `content-type` is structured unless it carries
`ce_specversion` (the records mentornet has always accepted). mentornet's own records are
structured, with `content-type: application/cloudevents+json` and no `ce_` header.

`decode_record` never raises anything but `Rejected`, whose `code` and `reason` go to the
dead-letter topic: the reason names the field and the problem so a person can fix the publisher.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from shared.contract.events import EVENT_MODELS, Identifier, Payload, Timestamp
from shared.contract.signature import MAX_AGE, MAX_AHEAD, is_signed_by, sign
from shared.contract.topics import TOPICS

MAX_EVENT_BYTES = 256 * 1024
MAX_DEPTH = 16
MAX_ARRAY_ITEMS = 1000
MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 * 1024
SPECVERSION = "1.0"
STRUCTURED = "application/cloudevents+json"  # the JSON event format's media type
BATCH = "application/cloudevents-batch+json"  # a JSON array of events (HTTP only)
_STRUCTURED_BYTES = STRUCTURED.encode()

# Keys of events published per person may carry the tenant ("acme:p-1") or not ("p-1").
PERSON_KEYED = frozenset(
    {"mentor-registered", "mentee-registered", "person-offboarded", "mentor-availability"}
)

Headers = Sequence[tuple[str, bytes]]
Mode = Literal["structured", "binary"]


class Rejected(Exception):
    """An input that breaks the contract. `code` is stable (documented); `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def media_type(content_type: str) -> str:
    """`application/cloudevents+json; charset=utf-8` -> `application/cloudevents+json`."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    """Whether a media type is JSON: `application/json` or any `+json` suffix."""
    kind = media_type(content_type)
    return kind == "application/json" or kind.endswith("+json")


def content_mode(headers: Headers) -> Mode:
    """The record's content mode, by its `content-type` header as the Kafka binding says; raises
    Rejected for a structured format other than JSON. A record with neither a CloudEvents
    content type nor `ce_specversion` cannot be binary (it has no attributes): it is read as
    structured, as mentornet always read it, whatever its `content-type` (`application/json`)."""
    if not headers:
        return "structured"
    content_type = _content_type(headers)
    if content_type == _STRUCTURED_BYTES:  # ours, and the SDKs': no parsing needed
        return "structured"
    if content_type is not None:
        kind = media_type(content_type.decode("utf-8", "replace"))
        if kind.startswith("application/cloudevents"):
            if kind != STRUCTURED:
                raise Rejected(
                    "unsupported_content_type",
                    f"content-type {kind!r}: structured records must be {STRUCTURED!r}",
                )
            return "structured"
    return "binary" if any(k == "ce_specversion" for k, _ in headers) else "structured"


def binary_attributes(headers: Headers) -> dict[str, bytes]:
    """The attributes of a binary-mode record: its `ce_` headers, and `content-type` as
    `datacontenttype`."""
    attributes = {k[3:]: v for k, v in headers if k.startswith("ce_")}
    content_type = _content_type(headers)
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    return attributes


def _content_type(headers: Headers) -> bytes | None:
    """The first `content-type` header's value (Kafka allows repeated headers)."""
    return next((v for k, v in headers if k.lower() == "content-type" and v is not None), None)


class RawJson(str):
    """A payload already serialised to JSON (by pydantic, from a validated model)."""


class CloudEvent(BaseModel):
    """The envelope. Extensions we know: tenantid (required), correlationid, traceparent, signature."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = SPECVERSION
    id: Identifier
    source: str = Field(min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=128)
    time: Timestamp
    datacontenttype: str = "application/json"
    tenantid: Identifier
    correlationid: str | None = Field(default=None, max_length=128)
    traceparent: str | None = Field(default=None, max_length=64)  # W3C trace context extension
    data: Any = None

    @property
    def correlation_id(self) -> str:
        """The id that ties a chain of events together: the first cause's id."""
        return self.correlationid or self.id

    @classmethod
    def new(
        cls,
        type: str,
        source: str,
        tenantid: str,
        data: Payload,
        *,
        cause: CloudEvent | None = None,
        id: str | None = None,
        time: datetime | None = None,
    ) -> CloudEvent:
        return cls(
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            time=time or datetime.now(UTC),
            tenantid=tenantid,
            correlationid=cause.correlation_id if cause else None,
            traceparent=cause.traceparent if cause else None,
            data=data,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.to_bytes())
        return body

    def kafka_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The headers of its structured-mode record (the Kafka binding): the content type, and
        the trace context for tools that read only headers."""
        headers = [("content-type", STRUCTURED.encode())]
        if self.traceparent:
            headers.append(("traceparent", self.traceparent.encode()))
        return tuple(headers)

    def signed_bytes(self, key: bytes) -> bytes:
        """Structured-mode JSON with the `signature` extension over the envelope as written (for
        a tenant whose events mentornet accepts only signed; shared.contract.signature)."""
        envelope = json.loads(self.to_bytes())
        envelope["signature"] = sign(envelope, key)
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

    def to_bytes(self) -> bytes:
        """Structured-mode JSON. Built by hand around pydantic's JSON of `data`: this runs once
        per published event, hundreds of thousands of times in a bulk sync."""
        head = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "datacontenttype": self.datacontenttype,
            "tenantid": self.tenantid,
        }
        if self.correlationid:
            head["correlationid"] = self.correlationid
        if self.traceparent:
            head["traceparent"] = self.traceparent
        if isinstance(self.data, RawJson):
            data = str(self.data)
        elif isinstance(self.data, BaseModel):
            data = self.data.model_dump_json(exclude_none=True)
        else:
            data = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return (
            json.dumps(head, separators=(",", ":"), ensure_ascii=False)[:-1]
            + ',"data":'
            + data
            + "}"
        ).encode()


def decode_record(
    value: bytes | None,
    headers: Headers = (),
    *,
    topic: str,
    key: bytes | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
    signing_keys: Mapping[str, bytes] | None = None,
    signature_max_age: timedelta = MAX_AGE,
    now: datetime | None = None,
) -> CloudEvent:
    """Validate one Kafka record against the v1 contract and return its event with typed `data`.

    On the topics outsiders publish (HR systems, apps), tenants named in `signing_keys` must sign
    their events, and a signed event older than `signature_max_age` is refused as a replay (see
    shared.contract.signature). Internal topics are never checked: only mentornet writes them."""
    event = _decode(value, headers, topic, key, max_bytes)
    if signing_keys and event.tenantid in signing_keys and _from_outside(topic):
        _check_signature(value or b"", headers, signing_keys[event.tenantid])
        _check_fresh(event, signature_max_age, now or datetime.now(UTC))
    return event


def _from_outside(topic: str) -> bool:
    return topic in TOPICS and TOPICS[topic].ingress


def _check_fresh(event: CloudEvent, max_age: timedelta, now: datetime) -> None:
    age = now - event.time
    if age > max_age:
        raise Rejected(
            "stale_signature",
            f"the event's 'time' is {_days(age)} old; signed events are accepted for "
            f"{_days(max_age)} (an older one may be a replay)",
        )
    if -age > MAX_AHEAD:
        raise Rejected(
            "stale_signature",
            f"the event's 'time' is {_days(-age)} ahead of ours; at most {_days(MAX_AHEAD)} is "
            "accepted",
        )


def _days(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _check_signature(value: bytes, headers: Headers, key: bytes) -> None:
    if content_mode(headers) == "binary":
        attributes = binary_attributes(headers)
        envelope: dict[str, Any] = {
            **{k: v.decode("utf-8", "replace") for k, v in attributes.items()},
            "data": json.loads(value),
        }
    else:
        envelope = json.loads(value)
    if not is_signed_by(envelope, key):
        raise Rejected(
            "bad_signature",
            "this tenant signs its events: 'signature' is missing or does not match",
        )


def _decode(
    value: bytes | None, headers: Headers, topic: str, key: bytes | None, max_bytes: int
) -> CloudEvent:
    mode = content_mode(headers)
    _check_headers(headers, mode)
    if value is None:
        raise Rejected("empty", "the record has no value (a tombstone is not an event)")
    if len(value) > max_bytes:
        raise Rejected("too_large", f"the record is {len(value)} bytes; the limit is {max_bytes}")
    fast = _decode_fast(value, mode, topic)
    if fast is not None:
        _check_key(fast, key)
        return fast
    if mode == "binary":
        attributes = binary_attributes(headers)
        envelope = {name: _header_text(name, raw) for name, raw in attributes.items()}
        if not is_json(envelope.get("datacontenttype", "application/json")):
            raise Rejected(
                "unsupported_content_type",
                f"content-type (datacontenttype) {envelope['datacontenttype']!r}: data must "
                "be JSON ('application/json')",
            )
        envelope["data"] = _parse_json(value, "the record value")
    else:
        body = _parse_json(value, "the record value")
        if not isinstance(body, dict):
            kind = _json_kind(body)
            raise Rejected("not_an_object", f"the event must be a JSON object, not {kind}")
        envelope = body
    _check_shape(envelope, value)
    if _may_hold_nul(value, headers):
        _check_no_nul(envelope)

    if "specversion" not in envelope:
        raise Rejected("missing_field", "'specversion' is required (CloudEvents 1.0)")
    if envelope["specversion"] != SPECVERSION:
        raise Rejected(
            "unknown_specversion",
            f"'specversion' is {envelope['specversion']!r}; only '1.0' is supported",
        )
    event_type = envelope.get("type")
    if isinstance(event_type, str) and event_type not in EVENT_MODELS:
        raise Rejected("unknown_type", f"'type' {event_type!r} is not an event of contract v1")
    try:
        event = CloudEvent.model_validate(envelope)
    except ValidationError as exc:
        raise Rejected(*_explain(exc, prefix="")) from None
    if event.type != topic:
        raise Rejected("type_mismatch", f"'type' is {event.type!r} but the topic is {topic!r}")
    try:
        data = EVENT_MODELS[event.type].model_validate(event.data)
    except ValidationError as exc:
        raise Rejected(*_explain(exc, prefix="data.")) from None
    event = event.model_copy(update={"data": data})
    _check_key(event, key)
    return event


_TYPED_ENVELOPES: dict[str, type[CloudEvent]] = {
    name: create_model(f"{model.__name__}Event", __base__=CloudEvent, data=(model, ...))
    for name, model in EVENT_MODELS.items()
}


def _decode_fast(value: bytes, mode: Mode, topic: str) -> CloudEvent | None:
    """The common case in one step: pydantic parses and validates the JSON bytes together.

    Returns None whenever anything is unusual, so the careful path can say exactly what is wrong.
    """
    if (
        _looks_nested(value)
        or NUL_ESCAPE in value
        or mode != "structured"
        or topic not in _TYPED_ENVELOPES
    ):
        return None
    try:
        event = _TYPED_ENVELOPES[topic].model_validate_json(value)
    except ValueError:
        return None
    if (
        "specversion" not in event.model_fields_set
        or event.specversion != SPECVERSION
        or event.type != topic
    ):
        return None
    return event


NUL_ESCAPE = b"\\u0000"  # JSON can only carry U+0000 escaped, and PostgreSQL cannot store it


def _may_hold_nul(value: bytes, headers: Headers) -> bool:
    return NUL_ESCAPE in value or any(
        b"\0" in raw for name, raw in headers if name.startswith("ce_")
    )


def _check_no_nul(node: Any) -> None:
    """Refuse U+0000 in any text, names included: no database column can hold it."""
    stack: list[tuple[Any, str]] = [(node, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str) and "\0" in item:
            where = f"'{path}'" if path else "the event"
            raise Rejected("invalid_field", f"{where} contains a NUL character (U+0000)")
        if isinstance(item, dict):
            for name, child in item.items():
                child_path = f"{path}.{name}" if path else str(name)
                if "\0" in str(name):
                    raise Rejected(
                        "invalid_field",
                        f"a field name in '{path or 'the event'}' contains a NUL character (U+0000)",
                    )
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{i}") for i, child in enumerate(item))


def _looks_nested(raw: bytes) -> bool:
    """Whether the bytes could nest too deep or hold a huge array (then the tree is walked)."""
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH or raw.count(b",") >= MAX_ARRAY_ITEMS


def _check_headers(headers: Headers, mode: Mode) -> None:
    for name, raw in headers:
        if raw is None and name.startswith("ce_") and mode == "binary":
            raise Rejected("invalid_header", f"header {name!r} has no value")
    if len(headers) > MAX_HEADERS:
        raise Rejected("too_many_headers", f"{len(headers)} headers; the limit is {MAX_HEADERS}")
    size = sum(len(k) + len(v or b"") for k, v in headers)
    if size > MAX_HEADER_BYTES:
        raise Rejected(
            "too_many_headers", f"headers total {size} bytes; the limit is {MAX_HEADER_BYTES}"
        )


def _header_text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        header = "content-type" if name == "datacontenttype" else f"ce_{name}"
        raise Rejected("invalid_utf8", f"header '{header}' is not valid UTF-8") from None


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("invalid_utf8", f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise Rejected("too_deep", f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise Rejected("not_json", f"{what} is not JSON: {exc}") from None


def _check_shape(node: Any, raw: bytes) -> None:
    """Reject deep nesting and huge arrays before pydantic walks them."""
    if not _looks_nested(raw):
        return
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Rejected("too_deep", f"the event nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if len(item) > MAX_ARRAY_ITEMS:
                raise Rejected(
                    "array_too_long",
                    f"an array has {len(item)} items; the limit is {MAX_ARRAY_ITEMS}",
                )
            stack.extend((v, depth + 1) for v in item)


def record_key(event: CloudEvent) -> str:
    """The Kafka key the topic registry names for this event: a person's is `tenant:person_id`,
    or the person alone when a colon would make that ambiguous (a key with one colon is read as
    tenant:person)."""
    if event.type in PERSON_KEYED:
        tenant, person = event.tenantid, event.data.person_id
        return person if ":" in tenant or ":" in person else f"{tenant}:{person}"
    return str(getattr(event.data, TOPICS[event.type].key))


def _check_key(event: CloudEvent, key: bytes | None) -> None:
    if event.type not in PERSON_KEYED or key is None:
        return
    person_id = getattr(event.data, "person_id", None)
    text = key.decode("utf-8", errors="replace")
    tenant, sep, person = text.rpartition(":") if text.count(":") == 1 else ("", "", text)
    if sep and tenant != event.tenantid:
        raise Rejected(
            "tenant_mismatch", f"the key's tenant {tenant!r} is not 'tenantid' {event.tenantid!r}"
        )
    if person != person_id:
        raise Rejected(
            "key_mismatch", f"the key {text!r} does not name data.person_id {person_id!r}"
        )


def _explain(exc: ValidationError, prefix: str) -> tuple[str, str]:
    problems: list[str] = []
    code = "invalid_field"
    for error in exc.errors()[:5]:
        where = (
            prefix + ".".join(str(p) for p in error["loc"]) if error["loc"] else prefix.rstrip(".")
        )
        if error["type"] == "missing":
            code = "missing_field" if code == "invalid_field" and len(problems) == 0 else code
            problems.append(f"'{where}' is required")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"'{where}': {message}")
    more = len(exc.errors()) - 5
    if more > 0:
        problems.append(f"and {more} more")
    return code, "; ".join(problems)


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
