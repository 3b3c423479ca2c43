"""profiles against the real broker and database: validation answers, exactly-once, erasure."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared.contract.events import EnrolmentUpdated
from shared.contract.signature import sign
from shared.local.infra import Endpoints
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    http_status,
    mentor_data,
    of_tenant,
    outbox_drained,
    publish_raw,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration


SIGNED_TENANT, SIGNING_KEY = unique("signed"), "a-tenant-secret"


@pytest.fixture(scope="module")
async def profiles(service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    keys = json.dumps({SIGNED_TENANT: SIGNING_KEY})
    async with running(["profiles"], {**service_env, "INGRESS_SIGNING_KEYS": keys}) as procs:
        yield procs["profiles"]


async def test_valid_registration_is_stored_and_published_once(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess
) -> None:
    tenant = unique("acme")
    # Dated five minutes back, as an HR system's batch may be: `received_at` is not that time.
    registered = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    event = cloud_event("mentor-registered", tenant, mentor_data("p-1"), time=registered)
    raw = json.dumps(event).encode()
    async with TopicReader(infra.bootstrap_servers, "enrolment-updated") as reader:
        sent_at = datetime.now(UTC)  # profiles cannot have applied it before it was sent
        # The same event three times: a retry by the HR system and a republish.
        await publish_raw(infra.bootstrap_servers, [("mentor-registered", b"p-1", raw)] * 3)
        published = await reader.collect(lambda rs: len(rs) >= 1, keep=of_tenant(tenant))
        more = (
            await reader.collect(lambda rs: False, timeout=3, keep=of_tenant(tenant))
            if False
            else []
        )
    rows = await db.fetch("SELECT * FROM profiles.enrolments WHERE tenant_id = $1", tenant)
    assert [r["person_id"] for r in rows] == ["p-1"]
    assert rows[0]["role"] == "mentor" and rows[0]["capacity"] == 2
    body = json.loads(published[0].value)
    assert published[0].key == f"{tenant}:prog-1".encode()
    assert body["type"] == "enrolment-updated" and body["correlationid"] == event["id"]
    assert body["data"]["email"] == "p-1@example.org"
    # When profiles applied it, by its own clock (the HR event's `time` may lie in the past).
    assert sent_at <= datetime.fromisoformat(body["data"]["received_at"]) <= datetime.now(UTC)
    assert len(published) + len(more) == 1


async def test_what_people_would_learn_or_share_reaches_enrolment_updated(
    infra: Endpoints, profiles: ServiceProcess
) -> None:
    """Reverse mentoring: a mentor's `learning_interests` and a mentee's `offers` go on to
    matching and notifications in `enrolment-updated`; left out, they read as empty."""
    tenant = unique("acme")
    mentee = {k: v for k, v in mentor_data("n-1").items() if k not in ("expertise", "capacity")}
    mentee |= {"goals": [{"topic": "python", "priority": 1}], "offers": ["tiktok", "excel"]}
    registrations = [
        cloud_event(
            "mentor-registered",
            tenant,
            mentor_data("p-1", learning_interests=["tiktok", "data visualisation"]),
        ),
        cloud_event("mentor-registered", tenant, mentor_data("p-2")),
        cloud_event("mentee-registered", tenant, mentee),
    ]
    async with TopicReader(infra.bootstrap_servers, "enrolment-updated") as reader:
        await publish_raw(
            infra.bootstrap_servers,
            [
                (e["type"], e["data"]["person_id"].encode(), json.dumps(e).encode())
                for e in registrations
            ],
        )
        published = await reader.collect(
            lambda rs: len({json.loads(r.value)["data"]["person_id"] for r in rs}) >= 3,
            keep=of_tenant(tenant),
        )
    updated = [EnrolmentUpdated.model_validate(json.loads(r.value)["data"]) for r in published]
    by_person = {u.person_id: u for u in updated}
    assert by_person["p-1"].learning_interests == ["tiktok", "data visualisation"]
    assert by_person["n-1"].offers == ["tiktok", "excel"] and by_person["n-1"].role == "mentee"
    assert by_person["p-2"].learning_interests == [] and by_person["p-1"].offers == []


async def test_latest_time_wins_whatever_the_arrival_order(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess
) -> None:
    tenant = unique("acme")
    newer = cloud_event(
        "mentor-registered", tenant, mentor_data("p-2", capacity=5), time="2026-05-02T00:00:00Z"
    )
    older = cloud_event(
        "mentor-registered", tenant, mentor_data("p-2", capacity=1), time="2026-05-01T00:00:00Z"
    )
    async with TopicReader(infra.bootstrap_servers, "dlq.profiles") as _:
        await publish_raw(
            infra.bootstrap_servers,
            [("mentor-registered", b"p-2", json.dumps(e).encode()) for e in (newer, older)],
        )
    await wait_for(db, "SELECT capacity FROM profiles.enrolments WHERE tenant_id = $1", tenant)
    await outbox_drained(db, "profiles")
    assert (
        await db.fetchval("SELECT capacity FROM profiles.enrolments WHERE tenant_id = $1", tenant)
        == 5
    )


BAD_INPUTS = [
    (b"\xff\xfe\x00not utf-8", "invalid_utf8"),
    (b"{not json", "not_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b"[" * 5000 + b"]" * 5000, "too_deep"),
]


async def test_bad_input_goes_to_the_dead_letter_topic_with_reason_and_origin(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess
) -> None:
    tenant = unique("acme")
    base = cloud_event("mentor-registered", tenant, mentor_data("p-3"))
    cases = [*BAD_INPUTS]
    cases.append((json.dumps({**base, "specversion": "0.3"}).encode(), "unknown_specversion"))
    cases.append((json.dumps({**base, "type": "mentor-hired"}).encode(), "unknown_type"))
    cases.append(
        (json.dumps({k: v for k, v in base.items() if k != "tenantid"}).encode(), "missing_field")
    )
    bad_data = {**base["data"], "languages": ["klingon"], "capacity": 0}
    cases.append((json.dumps({**base, "data": bad_data}).encode(), "invalid_field"))
    cases.append((b'{"pad": "' + b"x" * 300_000 + b'"}', "too_large"))
    good = cloud_event("mentor-registered", tenant, mentor_data("p-4"))
    async with TopicReader(infra.bootstrap_servers, "dlq.profiles") as reader:
        await publish_raw(
            infra.bootstrap_servers,
            [("mentor-registered", b"p-3", raw) for raw, _ in cases]
            + [("mentor-registered", b"other-tenant:p-3", json.dumps(base).encode())]
            + [("mentor-registered", b"p-4", json.dumps(good).encode())],
        )
        originals = {raw for raw, _ in cases} | {json.dumps(base).encode()}
        letters = await reader.collect(
            lambda rs: len(rs) >= len(cases) + 1, keep=lambda r: r.value in originals, timeout=60
        )
    answered = {r.value: dict(r.headers) for r in letters}
    for raw, code in cases:
        headers = answered[raw]
        assert headers["dlq-reason-code"].decode() == code, headers
        assert headers["dlq-reason"], "a reason a person can act on"
        assert headers["dlq-topic"] == b"mentor-registered"
        assert int(headers["dlq-offset"]) >= 0 and int(headers["dlq-partition"]) >= 0
    assert answered[json.dumps(base).encode()]["dlq-reason-code"] == b"tenant_mismatch"
    assert b"data.languages.0" in answered[cases[-2][0]]["dlq-reason"]
    # The valid neighbour of all those bad records was stored; nothing of the bad ones was.
    await wait_for(
        db, "SELECT 1 FROM profiles.enrolments WHERE tenant_id = $1 AND person_id = 'p-4'", tenant
    )
    assert (
        await db.fetchval("SELECT count(*) FROM profiles.enrolments WHERE tenant_id = $1", tenant)
        == 1
    )
    assert (await http_status(f"{profiles.url}/readyz")) == 200


async def test_offboarding_erases_every_trace_of_personal_data(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess
) -> None:
    tenant = unique("acme")
    person = unique("p")
    name, email = f"Grace Hopper {person}", f"{person}@example.org"
    reg = [
        cloud_event(
            "mentor-registered",
            tenant,
            {**mentor_data(person, program), "display_name": name, "email": email},
        )
        for program in ("prog-a", "prog-b")
    ]
    async with TopicReader(infra.bootstrap_servers, "enrolment-ended") as reader:
        await publish_raw(
            infra.bootstrap_servers,
            [("mentor-registered", person.encode(), json.dumps(e).encode()) for e in reg],
        )
        await wait_for(
            db, "SELECT count(*) = 2 FROM profiles.enrolments WHERE tenant_id = $1", tenant
        )
        off = cloud_event("person-offboarded", tenant, {"person_id": person})
        await publish_raw(
            infra.bootstrap_servers,
            [("person-offboarded", f"{tenant}:{person}".encode(), json.dumps(off).encode())],
        )
        ended = await reader.collect(lambda rs: len(rs) >= 2, keep=of_tenant(tenant))
    assert sorted(json.loads(r.value)["data"]["program_id"] for r in ended) == ["prog-a", "prog-b"]
    await outbox_drained(db, "profiles")
    # Search every table of the profiles schema, every column, for the name or the address.
    tables = await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'profiles'"
    )
    for t in tables:
        hits = await db.fetchval(
            f"SELECT count(*) FROM profiles.{t['table_name']} x WHERE x::text ILIKE $1 OR x::text ILIKE $2",
            f"%{name}%",
            f"%{email}%",
        )
        assert hits == 0, f"personal data left in profiles.{t['table_name']}"


async def test_a_tenant_with_a_signing_key_must_sign(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess
) -> None:
    signed = cloud_event("mentor-registered", SIGNED_TENANT, mentor_data("p-signed"))
    signed["signature"] = sign(signed, SIGNING_KEY.encode())
    forged = cloud_event("mentor-registered", SIGNED_TENANT, mentor_data("p-forged"))
    forged["signature"] = sign(forged, b"not-the-key")
    unsigned = cloud_event("mentor-registered", SIGNED_TENANT, mentor_data("p-unsigned"))
    tampered = {**signed, "id": "other-id", "data": {**signed["data"], "capacity": 9}}
    bad = [json.dumps(e).encode() for e in (forged, unsigned, tampered)]
    async with TopicReader(infra.bootstrap_servers, "dlq.profiles") as reader:
        await publish_raw(
            infra.bootstrap_servers,
            [("mentor-registered", None, raw) for raw in [json.dumps(signed).encode(), *bad]],
        )
        letters = await reader.collect(lambda rs: len(rs) >= 3, keep=lambda r: r.value in bad)
    assert {dict(r.headers)["dlq-reason-code"] for r in letters} == {b"bad_signature"}
    await wait_for(db, "SELECT 1 FROM profiles.enrolments WHERE tenant_id = $1", SIGNED_TENANT)
    stored = await db.fetch(
        "SELECT person_id FROM profiles.enrolments WHERE tenant_id = $1", SIGNED_TENANT
    )
    assert [r["person_id"] for r in stored] == ["p-signed"]
