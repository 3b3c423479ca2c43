"""profiles' HTTP ingress (`POST /events`, the CloudEvents HTTP binding) against the real broker
and database, through the real service process.

Valid events are built with the official CloudEvents SDK (structured, binary and batch), which
proves the binding interoperates; bad ones are written by hand. What the endpoint published is
read back from Kafka as Kafka holds it at the moment the answer arrived (`KafkaLog.held`: end
offsets first, then up to them, never waiting for more), and what profiles made of it from the
database. That the answer waits for Kafka's acknowledgement is shown on a replica whose produce
requests are made late on purpose (`tests.support.produce_delay`): on a fast broker, an answer
given too early would still lose the race only now and then.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.bindings.http import HTTPMessage
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shared.contract.signature import sign
from shared.local.infra import Endpoints
from tests.support import Services, fresh_group, mentor_data, topic_partitions, unique, wait_for
from tests.support.produce_delay import produce_delay_env

pytestmark = pytest.mark.integration

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_BYTES = 1024 * 1024  # a batch of 1000 events (about 450 KB) fits; 1.1 MB does not
PRODUCE_DELAY = 0.5  # seconds each produce request of the `slow` replica leaves late
FORMAT = JSONFormat()

# Tenants of the main process (default rate limit); each test counts its own people or program.
ACME, GLOBEX, SIGNED = unique("acme"), unique("globex"), unique("signed")
# Tenants of the rate-limited process: 1 event a second, a full batch of 1000 at once.
HASTY, PATIENT = unique("hasty"), unique("patient")
TOKENS = {t: secrets.token_urlsafe(32) for t in (ACME, GLOBEX, SIGNED, HASTY, PATIENT)}
SIGNING_KEY = secrets.token_urlsafe(32)


def tokens(*tenants: str) -> str:
    return json.dumps({t: TOKENS[t] for t in tenants})


@pytest.fixture(scope="module")
async def services(infra: Endpoints, service_env: dict[str, str]) -> AsyncIterator[Services]:
    """Three profiles processes in a consumer group of their own, started at the topics' ends:
    `profiles` with the default rate limit and a 1 MiB body limit; `limited` with a rate of one
    event a second (a burst of one full batch); `slow`, a replica of `profiles` whose Kafka
    produce requests leave PRODUCE_DELAY late."""
    group = await fresh_group(infra.bootstrap_servers, "profiles", "http-ingress")
    common = {
        **service_env,
        "CONSUMER_GROUP": group,
        "INGRESS_SIGNING_KEYS": json.dumps({SIGNED: SIGNING_KEY}),
    }
    procs = Services()
    procs.add(
        "profiles",
        "profiles",
        {
            **common,
            "HTTP_INGRESS_TOKENS": tokens(ACME, GLOBEX, SIGNED),
            "HTTP_INGRESS_MAX_BYTES": str(MAX_BYTES),
        },
    )
    procs.add(
        "limited",
        "profiles",
        {
            **common,
            "HTTP_INGRESS_TOKENS": tokens(HASTY, PATIENT),
            "HTTP_INGRESS_RATE": "1",
            "HTTP_INGRESS_BURST": "1000",
        },
    )
    procs.add(
        "slow",
        "profiles",
        {**common, "HTTP_INGRESS_TOKENS": tokens(ACME), **produce_delay_env(PRODUCE_DELAY)},
    )
    async with procs:
        yield procs


@pytest.fixture(scope="module")
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=services["profiles"].url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
async def limited(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=services["limited"].url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
async def slow(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=services["slow"].url, timeout=30) as http:
        yield http


# --- events ----------------------------------------------------------------------------------


def sdk_event(
    tenant: str, data: dict[str, Any], type_: str = "mentor-registered", **attributes: Any
) -> CloudEvent:
    """An event as the CloudEvents SDK builds it (id, specversion and time by the SDK)."""
    return CloudEvent(
        {
            "type": type_,
            "source": "hr/workday",
            "tenantid": tenant,
            "datacontenttype": "application/json",
            **attributes,
        },
        data,
    )


def as_json(event: CloudEvent) -> dict[str, Any]:
    """The event in the JSON format, as a dict (what a batch holds, or what is signed)."""
    body: dict[str, Any] = json.loads(FORMAT.write(event))
    return body


def batch(events: list[Any]) -> HTTPMessage:
    """A batch: the JSON format's array, the SDK's events serialised by the SDK."""
    items = [
        FORMAT.write(e) if isinstance(e, CloudEvent) else json.dumps(e).encode() for e in events
    ]
    return HTTPMessage({"content-type": BATCH}, b"[" + b",".join(items) + b"]")


def bearer(tenant: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[tenant]}"}


async def post(
    http: httpx.AsyncClient, message: HTTPMessage, tenant: str | None, **headers: str
) -> httpx.Response:
    auth = bearer(tenant) if tenant else {}
    return await http.post(
        "/events", content=message.body, headers={**message.headers, **auth, **headers}
    )


def events_of(response: httpx.Response) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def error_of(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- Kafka, as it is at a given moment ---------------------------------------------------------


class KafkaLog:
    """One topic from the moment it was opened. `held(keep)` returns the kept records Kafka held
    when it was called: the end offsets are read first, in one request to the broker, and the
    topic is then read up to them: nothing appended afterwards is waited for or returned."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.start: dict[Any, int] = {}

    async def __aenter__(self) -> KafkaLog:
        await self.consumer.start()
        partitions = await topic_partitions(self.bootstrap, [self.topic])
        self.consumer.assign(partitions)
        self.start = dict(await self.consumer.end_offsets(partitions))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def held(self, keep: Callable[[Any], bool] = lambda r: True) -> list[Any]:
        ends = await self.consumer.end_offsets(list(self.start))
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)
        pending = {tp for tp in self.start if ends[tp] > self.start[tp]}
        found: list[Any] = []
        deadline = time.monotonic() + 15
        while pending:
            assert time.monotonic() < deadline, f"could not read {self.topic} up to {ends}"
            batches = await self.consumer.getmany(*pending, timeout_ms=200)
            for tp, records in batches.items():
                found += [r for r in records if r.offset < ends[tp] and keep(r)]
            pending = {tp for tp in pending if await self.consumer.position(tp) < ends[tp]}
        return found


def event_ids(*ids: str) -> Callable[[Any], bool]:
    """A `keep` filter: records carrying one of these event ids (structured or binary mode)."""
    wanted = {i.encode() for i in ids}

    def keep(record: Any) -> bool:
        headers = dict(record.headers)
        if "ce_id" in headers:
            return headers["ce_id"] in wanted
        try:
            return json.loads(record.value).get("id", "").encode() in wanted
        except (ValueError, AttributeError):
            return False

    return keep


@pytest.fixture
async def registrations(infra: Endpoints) -> AsyncIterator[KafkaLog]:
    async with KafkaLog(infra.bootstrap_servers, "mentor-registered") as log:
        yield log


async def enrolments(db: asyncpg.Pool, tenant: str, program: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM profiles.enrolments WHERE tenant_id = $1 AND program_id = $2",
        tenant,
        program,
    )
    return count


# --- the three modes -------------------------------------------------------------------------


async def test_a_structured_event_is_published_then_applied(
    client: httpx.AsyncClient, db: asyncpg.Pool, registrations: KafkaLog
) -> None:
    person = unique("p")
    event = sdk_event(ACME, mentor_data(person))
    response = await post(client, ce_http.to_structured(event, FORMAT), ACME)
    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "accepted": 1,
        "rejected": 0,
        "events": [{"index": 0, "id": event.get_id(), "status": "accepted"}],
    }
    # On the topic named by its type, in structured mode, keyed by the topic registry's key.
    (record,) = await registrations.held(event_ids(event.get_id()))
    assert dict(record.headers)["content-type"] == STRUCTURED.encode()
    assert record.key == f"{ACME}:{person}".encode()
    assert json.loads(record.value) == as_json(event)
    read_back = ce_kafka.from_kafka(
        ce_kafka.KafkaMessage(dict(record.headers), record.key, record.value), FORMAT
    )
    assert read_back.get_id() == event.get_id() and read_back.get_data() == mentor_data(person)
    # And profiles applied it through its usual pipeline.
    await wait_for(
        db,
        "SELECT 1 FROM profiles.enrolments WHERE tenant_id = $1 AND person_id = $2"
        " AND role = 'mentor' AND capacity = 2",
        ACME,
        person,
    )


async def test_a_binary_event_keeps_its_percent_decoded_attributes(
    client: httpx.AsyncClient, db: asyncpg.Pool, registrations: KafkaLog
) -> None:
    # The SDK percent-encodes what a header may not hold (the space, the "é").
    person = unique("p")
    event = sdk_event(ACME, mentor_data(person), source="hr/acme workday é")
    message = ce_http.to_binary(event, FORMAT)
    assert message.headers["ce-source"] == "hr/acme%20workday%20%C3%A9"
    assert message.headers["content-type"] == "application/json"
    response = await post(client, message, ACME)
    assert response.status_code == 202, response.text
    assert events_of(response) == [{"index": 0, "id": event.get_id(), "status": "accepted"}]
    # Raw UTF-8 in a header, not percent-encoded: read as UTF-8 (never as Latin-1), and a byte
    # that is not UTF-8 is refused by the contract, as in a Kafka header.
    raw = ce_http.to_binary(sdk_event(ACME, mentor_data(unique("p"))), FORMAT)
    raw_headers: dict[str, str | bytes] = {**raw.headers, "ce-source": "hr/é".encode()}
    response = await client.post(
        "/events", content=raw.body, headers={**raw_headers, **bearer(ACME)}
    )
    assert response.status_code == 202, response.text
    stored = await db.fetchval(
        "SELECT source FROM profiles.http_ingress WHERE tenant_id = $1 AND event_id = $2",
        ACME,
        raw.headers["ce-id"],
    )
    assert stored == "hr/é"
    raw_headers["ce-source"] = b"hr/\xe9"
    response = await client.post(
        "/events", content=raw.body, headers={**raw_headers, "ce-id": unique("e"), **bearer(ACME)}
    )
    assert response.status_code == 400, response.text
    assert events_of(response)[0]["code"] == "invalid_utf8"
    # A hand-written one, with "/" encoded too, as some HTTP clients do.
    other = unique("p")
    by_hand = sdk_event(ACME, mentor_data(other), source="hr/acme workday")
    hand = ce_http.to_binary(by_hand, FORMAT)
    hand.headers["ce-source"] = "hr%2Facme%20workday"
    assert (await post(client, hand, ACME)).status_code == 202

    records = await registrations.held(event_ids(event.get_id(), by_hand.get_id()))
    by_id = {dict(r.headers)["ce_id"].decode(): r for r in records}
    assert sorted(by_id) == sorted([event.get_id(), by_hand.get_id()])
    # Published in binary mode as the Kafka binding has it: ce_ headers, data as the value.
    sdk_record = by_id[event.get_id()]
    headers = dict(sdk_record.headers)
    assert headers["ce_source"] == "hr/acme workday é".encode()
    assert headers["content-type"] == b"application/json"
    assert json.loads(sdk_record.value) == mentor_data(person)
    assert dict(by_id[by_hand.get_id()].headers)["ce_source"] == b"hr/acme workday"
    read_back = ce_kafka.from_kafka(
        ce_kafka.KafkaMessage(headers, sdk_record.key, sdk_record.value), FORMAT
    )
    assert read_back.get_source() == "hr/acme workday é"
    assert read_back.get_extension("tenantid") == ACME
    assert read_back.get_data() == mentor_data(person)
    # Applied, and remembered under the decoded source.
    for who in (person, other):
        await wait_for(
            db,
            "SELECT 1 FROM profiles.enrolments WHERE tenant_id = $1 AND person_id = $2",
            ACME,
            who,
        )
    sources = await db.fetch(
        "SELECT source FROM profiles.http_ingress WHERE tenant_id = $1 AND event_id = ANY($2)",
        ACME,
        [event.get_id(), by_hand.get_id()],
    )
    assert sorted(r["source"] for r in sources) == ["hr/acme workday", "hr/acme workday é"]


async def test_a_batch_answers_for_each_event(
    client: httpx.AsyncClient, db: asyncpg.Pool, registrations: KafkaLog
) -> None:
    program = unique("prog")
    good = [sdk_event(ACME, mentor_data(unique("p"), program)) for _ in range(3)]
    base = as_json(sdk_event(ACME, mentor_data(unique("p"), program)))
    bad_language = {**base, "id": unique("e"), "data": {**base["data"], "languages": ["xx"]}}
    missing = {k: v for k, v in base.items() if k != "source"} | {"id": unique("e")}
    egress = {**base, "id": unique("e"), "type": "match-proposed"}
    unknown = {**base, "id": unique("e"), "type": "mentor-hired"}
    foreign = as_json(sdk_event(GLOBEX, mentor_data(unique("p"), program)))
    posted: list[Any] = [
        good[0],
        bad_language,
        missing,
        good[1],
        [1, 2, 3],
        egress,
        unknown,
        foreign,
        good[2],
    ]
    expected = {
        1: "invalid_field",
        2: "missing_field",
        4: "not_an_object",
        5: "not_ingress",
        6: "unknown_type",
        7: "forbidden_tenant",
    }
    response = await post(client, batch(posted), ACME)
    assert response.status_code == 207, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (3, 6)
    events = events_of(response)
    assert [e["index"] for e in events] == list(range(len(posted)))
    assert {e["index"]: e["code"] for e in events if e["status"] == "rejected"} == expected
    assert all(e["reason"] for e in events if e["status"] == "rejected")
    assert "data.languages.0" in events[1]["reason"]
    accepted = [e for e in events if e["status"] == "accepted"]
    assert [(e["index"], e["id"]) for e in accepted] == [
        (i, good[n].get_id()) for n, i in enumerate((0, 3, 8))
    ]
    assert events[4]["id"] is None and events[7]["id"] == foreign["id"]
    # Only the valid ones were published, and only they are stored.
    ids = [e.get_id() for e in good] + [p["id"] for p in posted if isinstance(p, dict)]
    published = await registrations.held(event_ids(*ids))
    assert sorted(json.loads(r.value)["id"] for r in published) == sorted(e.get_id() for e in good)
    await wait_for(
        db,
        "SELECT count(*) = 3 FROM profiles.enrolments WHERE tenant_id = $1 AND program_id = $2",
        ACME,
        program,
    )
    assert await enrolments(db, GLOBEX, program) == 0

    # All of them another tenant's: 403. All refused, not all foreign: 400.
    foreign_only = [as_json(sdk_event(GLOBEX, mentor_data(unique("p"), program))) for _ in range(2)]
    response = await post(client, batch(foreign_only), ACME)
    assert response.status_code == 403, response.text
    assert [e["code"] for e in events_of(response)] == ["forbidden_tenant"] * 2
    response = await post(client, batch([bad_language, foreign, unknown]), ACME)
    assert response.status_code == 400, response.text
    assert response.json()["accepted"] == 0
    assert [e["code"] for e in events_of(response)] == [
        "invalid_field",
        "forbidden_tenant",
        "unknown_type",
    ]
    assert await registrations.held(event_ids(*(e["id"] for e in foreign_only))) == []


async def test_a_repeated_request_is_answered_duplicate_and_not_published_again(
    client: httpx.AsyncClient, db: asyncpg.Pool, registrations: KafkaLog
) -> None:
    event = sdk_event(ACME, mentor_data(unique("p")))
    message = ce_http.to_structured(event, FORMAT)
    first = await post(client, message, ACME)
    assert first.status_code == 202 and events_of(first)[0]["status"] == "accepted"
    again = await post(client, message, ACME)  # the HR system retries: its answer was lost
    assert again.status_code == 202, again.text  # a duplicate counts as accepted
    assert again.json() == {
        "accepted": 1,
        "rejected": 0,
        "events": [{"index": 0, "id": event.get_id(), "status": "duplicate"}],
    }
    # A batch holding it again, once more inside the batch, and a new one.
    new = sdk_event(ACME, mentor_data(unique("p")))
    response = await post(client, batch([event, new, new]), ACME)
    assert response.status_code == 202, response.text
    assert [e["status"] for e in events_of(response)] == ["duplicate", "accepted", "duplicate"]
    # The same event in binary mode is the same event (same tenant, source and id).
    assert events_of(await post(client, ce_http.to_binary(event, FORMAT), ACME)) == [
        {"index": 0, "id": event.get_id(), "status": "duplicate"}
    ]
    published = await registrations.held(event_ids(event.get_id(), new.get_id()))
    assert sorted(json.loads(r.value)["id"] for r in published) == sorted(
        [event.get_id(), new.get_id()]
    )
    remembered = await db.fetchval(
        "SELECT count(*) FROM profiles.http_ingress WHERE tenant_id = $1 AND event_id = ANY($2)",
        ACME,
        [event.get_id(), new.get_id()],
    )
    assert remembered == 2
    # Another tenant's event of the same source and id is not a duplicate of this one.
    twin = sdk_event(GLOBEX, mentor_data(unique("p")), id=event.get_id())
    twin_answer = await post(client, ce_http.to_structured(twin, FORMAT), GLOBEX)
    assert events_of(twin_answer)[0]["status"] == "accepted", twin_answer.text


# --- who may send what ---------------------------------------------------------------------


async def test_a_request_without_a_known_token_is_unauthorized(
    client: httpx.AsyncClient, registrations: KafkaLog
) -> None:
    event = sdk_event(ACME, mentor_data(unique("p")))
    message = ce_http.to_structured(event, FORMAT)
    for auth in ({}, {"authorization": "Bearer not-a-token"}, {"authorization": TOKENS[ACME]}):
        response = await post(client, message, None, **auth)
        assert response.status_code == 401, (auth, response.text)
        assert error_of(response) == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    # Another process's tenant is unknown here.
    response = await post(client, message, HASTY)
    assert (
        response.status_code == 401
        and 'error="invalid_token"' in response.headers["www-authenticate"]
    )
    assert await registrations.held(event_ids(event.get_id())) == []


async def test_a_token_sends_its_own_tenants_events_only(
    client: httpx.AsyncClient, db: asyncpg.Pool, registrations: KafkaLog
) -> None:
    person = unique("p")
    event = sdk_event(GLOBEX, mentor_data(person))
    for message in (ce_http.to_structured(event, FORMAT), ce_http.to_binary(event, FORMAT)):
        response = await post(client, message, ACME)
        assert response.status_code == 403, response.text
        (answer,) = events_of(response)
        assert answer["status"] == "rejected" and answer["code"] == "forbidden_tenant"
        assert GLOBEX in answer["reason"]
    assert await registrations.held(event_ids(event.get_id())) == []
    assert not await db.fetchval(
        "SELECT count(*) FROM profiles.http_ingress WHERE event_id = $1", event.get_id()
    )
    assert not await db.fetchval(
        "SELECT count(*) FROM profiles.enrolments WHERE person_id = $1", person
    )


async def test_a_signed_tenant_must_sign_over_http_too(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    unsigned = sdk_event(SIGNED, mentor_data(unique("p")))
    draft = sdk_event(SIGNED, mentor_data(unique("p")))
    forged = CloudEvent(
        {**draft.get_attributes(), "signature": sign(as_json(draft), b"not-the-key")},
        draft.get_data(),
    )
    response = await post(client, batch([unsigned, forged]), SIGNED)
    assert response.status_code == 400, response.text
    assert [e["code"] for e in events_of(response)] == ["bad_signature"] * 2  # as on Kafka
    # Signed with the tenant's key (over id, source, type, time, tenantid, data): accepted, in
    # structured and in binary mode.
    person = unique("p")
    draft = sdk_event(SIGNED, mentor_data(person), id=unique("e"))
    signature = sign(as_json(draft), SIGNING_KEY.encode())
    signed = CloudEvent({**draft.get_attributes(), "signature": signature}, draft.get_data())
    for message in (ce_http.to_structured(signed, FORMAT), ce_http.to_binary(signed, FORMAT)):
        response = await post(client, message, SIGNED)
        assert response.status_code == 202, response.text
    await wait_for(
        db,
        "SELECT 1 FROM profiles.enrolments WHERE tenant_id = $1 AND person_id = $2",
        SIGNED,
        person,
    )


# --- requests refused as a whole -----------------------------------------------------------


async def test_requests_refused_as_a_whole(client: httpx.AsyncClient) -> None:
    event = sdk_event(ACME, mentor_data(unique("p")))
    structured = ce_http.to_structured(event, FORMAT)

    # Over the body limit, declared (Content-Length) or streamed (chunked).
    padded = as_json(event) | {"pad": "x" * (MAX_BYTES + 100_000)}
    big = HTTPMessage({"content-type": STRUCTURED}, json.dumps(padded).encode())
    response = await post(client, big, ACME)
    assert (response.status_code, error_of(response)) == (413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big.body), 64 * 1024):
            yield big.body[start : start + 64 * 1024]

    response = await client.post(
        "/events", content=chunks(), headers={"content-type": STRUCTURED, **bearer(ACME)}
    )
    assert (response.status_code, error_of(response)) == (413, "too_large")

    # More events than a batch holds (the body itself is small).
    response = await post(client, batch([{}] * 1001), ACME)
    assert (response.status_code, error_of(response)) == (413, "too_many_events")

    # Neither a CloudEvents media type nor binary mode; a structured format other than JSON.
    for content_type in ("text/plain", "application/json", "application/cloudevents+xml"):
        plain = HTTPMessage({"content-type": content_type}, structured.body)
        response = await post(client, plain, ACME)
        assert (response.status_code, error_of(response)) == (415, "unsupported_content_type")

    response = await client.get("/events", headers=bearer(ACME))
    assert (response.status_code, error_of(response)) == (405, "method_not_allowed")
    assert response.headers["allow"] == "POST"

    deep = b"[" * 10_000 + b"]" * 10_000
    refused = (
        (b"[{", "not_json"),
        (b"{}", "not_an_array"),
        (b"[]", "empty_batch"),
        (deep, "too_deep"),
    )
    for body, code in refused:
        response = await post(client, HTTPMessage({"content-type": BATCH}, body), ACME)
        assert (response.status_code, error_of(response)) == (400, code), body
    # JSON on the wire is UTF-8: a UTF-16 batch is refused, as a UTF-16 event is.
    utf16 = HTTPMessage({"content-type": BATCH}, json.dumps([as_json(event)]).encode("utf-16"))
    response = await post(client, utf16, ACME)
    assert (response.status_code, error_of(response)) == (400, "invalid_utf8")

    # One structured event that is not JSON is one event refused, with the contract's code.
    response = await post(client, HTTPMessage({"content-type": STRUCTURED}, b"{nope"), ACME)
    assert response.status_code == 400, response.text
    (answer,) = events_of(response)
    assert (answer["id"], answer["status"], answer["code"]) == (None, "rejected", "not_json")


# --- rate limit ------------------------------------------------------------------------------


async def test_a_full_batch_passes_then_the_tenant_is_held_to_its_rate(
    limited: httpx.AsyncClient, db: asyncpg.Pool, registrations: KafkaLog
) -> None:
    program = unique("prog")
    full = [sdk_event(HASTY, mentor_data(f"p-{n}", program)) for n in range(1000)]
    response = await post(limited, batch(full), HASTY)
    assert response.status_code == 202, response.text[:500]
    assert response.json()["accepted"] == 1000
    assert {e["status"] for e in events_of(response)} == {"accepted"}

    # The burst is spent: the next event waits for the rate (one a second).
    late = sdk_event(HASTY, mentor_data("p-late", program))
    refused = await post(limited, ce_http.to_structured(late, FORMAT), HASTY)
    assert refused.status_code == 429, refused.text
    assert error_of(refused) == "rate_limited"
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    # Another tenant of the same process is not held up.
    other = sdk_event(PATIENT, mentor_data(unique("p"), program))
    assert (await post(limited, ce_http.to_structured(other, FORMAT), PATIENT)).status_code == 202
    # The refused event was not published; after Retry-After it is accepted.
    assert await registrations.held(event_ids(late.get_id())) == []
    await asyncio.sleep(int(retry_after))
    retried = await post(limited, ce_http.to_structured(late, FORMAT), HASTY)
    assert retried.status_code == 202, retried.text
    await wait_for(
        db,
        "SELECT count(*) = 1001 FROM profiles.enrolments WHERE tenant_id = $1 AND program_id = $2",
        HASTY,
        program,
        timeout=60,
    )


# --- the answer comes after Kafka's acknowledgement ----------------------------------------


async def test_the_answer_comes_once_kafka_holds_the_events(
    slow: httpx.AsyncClient, registrations: KafkaLog
) -> None:
    """Even on a replica whose produce requests leave late, the answer comes only once Kafka
    holds every accepted event: Kafka's end offsets, read right as the answer arrives, cover
    them (an answer given before the acknowledgement would come before the records)."""
    events = [sdk_event(ACME, mentor_data(unique("p"))) for _ in range(3)]
    started = time.monotonic()
    single = await post(slow, ce_http.to_structured(events[0], FORMAT), ACME)
    assert single.status_code == 202, single.text
    assert len(await registrations.held(event_ids(events[0].get_id()))) == 1
    several = await post(slow, batch(events[1:]), ACME)
    assert several.status_code == 202, several.text
    assert len(await registrations.held(event_ids(*(e.get_id() for e in events[1:])))) == 2
    assert time.monotonic() - started >= 2 * PRODUCE_DELAY  # each answer waited for Kafka
