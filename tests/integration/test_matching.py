"""matching against the real broker and database: rules, lifecycle, expiry, learning, answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.matching.repository import NewProposal, StalePool, insert_proposals
from shared.local.infra import Endpoints
from tests.support import (
    ServiceProcess,
    TopicReader,
    cloud_event,
    enrolment_updated,
    ingress,
    of_tenant,
    publish_raw,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def matching(service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with running(["matching"], {**service_env, "EXPIRY_INTERVAL_SECONDS": "0.2"}) as procs:
        yield procs["matching"]


def bodies(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


async def test_proposals_respect_capacity_and_rules_and_move_on_after_a_decline(
    infra: Endpoints, matching: ServiceProcess
) -> None:
    tenant = unique("acme")
    bootstrap = infra.bootstrap_servers
    async with TopicReader(bootstrap, "match-proposed", "match-ended", "match-confirmed") as reader:
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(tenant, "mentor", "alice"),
                enrolment_updated(
                    tenant,
                    "mentor",
                    "bob",
                    languages=["en", "fr"],
                    expertise=[{"topic": "Python", "level": 2}],
                ),
                enrolment_updated(
                    tenant, "mentor", "carol", languages=["de"]
                ),  # shares no language with anyone
                enrolment_updated(tenant, "mentee", "xavier"),
                enrolment_updated(
                    tenant, "mentee", "yann", manager_id="alice"
                ),  # never alice's mentee
                enrolment_updated(tenant, "mentee", "zoe"),
            ],
        )
        first = bodies(await reader.collect(lambda rs: len(rs) >= 2, keep=of_tenant(tenant)))
        assert {e["type"] for e in first} == {"match-proposed"}
        pairs = {(e["data"]["mentee_id"], e["data"]["mentor_id"]) for e in first}
        assert {m for _, m in pairs} == {"alice", "bob"}, (
            "each mentor holds one slot; carol shares no language"
        )
        assert ("yann", "alice") not in pairs
        assert len({m for m, _ in pairs}) == 2
        for e in first:
            data = e["data"]
            assert sum(i["contribution"] for i in data["explanation"]) == pytest.approx(
                data["score"], abs=1e-6
            )

        # The mentee proposed to alice declines: alice's slot is freed, the waitlist moves on.
        decliner = next(m for m, mentor in pairs if mentor == "alice")
        match_id = next(e["data"]["match_id"] for e in first if e["data"]["mentor_id"] == "alice")
        await publish_raw(
            bootstrap,
            [
                ingress(
                    "match-responded",
                    tenant,
                    match_id,
                    {"match_id": match_id, "person_id": decliner, "decision": "declined"},
                )
            ],
        )
        after = bodies(await reader.collect(lambda rs: len(rs) >= 2, keep=of_tenant(tenant)))
        ended = next(e for e in after if e["type"] == "match-ended")
        assert ended["data"] == {
            **ended["data"],
            "match_id": match_id,
            "outcome": "declined",
            "ended_by": decliner,
        }
        again = next(e for e in after if e["type"] == "match-proposed")
        assert again["data"]["mentor_id"] == "alice" and again["data"]["mentee_id"] not in (
            decliner,
            "yann",
        )

        # Two-sided consent: the other proposal is confirmed once both have accepted.
        other = next(e["data"] for e in first if e["data"]["mentor_id"] == "bob")
        await publish_raw(
            bootstrap,
            [
                ingress(
                    "match-responded",
                    tenant,
                    other["match_id"],
                    {"match_id": other["match_id"], "person_id": who, "decision": "accepted"},
                )
                for who in (other["mentee_id"], other["mentor_id"])
            ],
        )
        confirmed = bodies(
            await reader.collect(
                lambda rs: any(e["type"] == "match-confirmed" for e in bodies(rs)),
                keep=of_tenant(tenant),
            )
        )
        assert any(
            e["data"]["match_id"] == other["match_id"]
            for e in confirmed
            if e["type"] == "match-confirmed"
        )


async def test_no_empty_matches_mentees_wait_and_say_why_then_related_topics_cover_them(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    """A mentor covering none of a mentee's goals is never proposed: the mentee waits, and
    matching says why (`mentee-waiting`, and the reason stored for `program show`), once per
    reason. A mentor whose expertise covers the goal through a related topic is proposed, and the
    explanation says through which."""
    tenant = unique("acme")
    bootstrap = infra.bootstrap_servers

    async def reasons() -> dict[str, str | None]:
        rows = await db.fetch(
            "SELECT person_id, waiting_reason FROM matching.mentees WHERE tenant_id = $1", tenant
        )
        return {r["person_id"]: r["waiting_reason"] for r in rows}

    async with TopicReader(bootstrap, "match-proposed", "mentee-waiting") as reader:
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(
                    tenant, "mentor", "sales", expertise=[{"topic": "sales", "level": 5}]
                ),
                enrolment_updated(tenant, "mentee", "nina"),  # wants python
                enrolment_updated(tenant, "mentee", "hans", languages=["de"]),
            ],
        )
        waited = bodies(await reader.collect(lambda rs: len(rs) >= 2, keep=of_tenant(tenant)))
        assert {(e["type"], e["data"]["mentee_id"], e["data"]["reason"]) for e in waited} == {
            ("mentee-waiting", "nina", "no_topic"),
            ("mentee-waiting", "hans", "no_common_language"),
        }
        assert await reasons() == {"nina": "no_topic", "hans": "no_common_language"}
        # another mentor who covers nothing: tried again, the same reasons are not announced again
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(
                    tenant, "mentor", "sales2", expertise=[{"topic": "sales", "level": 3}]
                )
            ],
        )
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(
                    tenant, "mentor", "dj", expertise=[{"topic": "Django", "level": 5}]
                )
            ],
        )
        found = bodies(
            await reader.collect(
                lambda rs: any(json.loads(r.value)["type"] == "match-proposed" for r in rs),
                keep=of_tenant(tenant),
            )
        )
    assert [e["type"] for e in found] == ["match-proposed"]  # no mentee-waiting repeated
    proposed = found[0]["data"]
    assert (proposed["mentee_id"], proposed["mentor_id"]) == ("nina", "dj")
    topic_fit = next(i for i in proposed["explanation"] if i["criterion"] == "topic_fit")
    assert topic_fit["reason"] == "Covers your goal: python (through Django)"
    assert topic_fit["facts"]["goals"][0]["through"] == "Django"
    assert await reasons() == {"nina": None, "hans": "no_common_language"}


async def test_unanswered_proposals_expire_and_the_mentee_gets_the_next_best(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant = unique("acme")
    bootstrap = infra.bootstrap_servers
    deadline_seconds = 1.5
    config = {"program_id": "prog", "response_deadline_hours": deadline_seconds / 3600}
    async with TopicReader(bootstrap, "match-proposed", "match-ended") as reader:
        await publish_raw(bootstrap, [ingress("program-configured", tenant, "prog", config)])
        await wait_for(db, "SELECT 1 FROM matching.programs WHERE tenant_id = $1", tenant)
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(
                    tenant, "mentor", "best", expertise=[{"topic": "python", "level": 5}]
                ),
                enrolment_updated(
                    tenant, "mentor", "second", expertise=[{"topic": "python", "level": 2}]
                ),
                enrolment_updated(tenant, "mentee", "nina"),
            ],
        )
        events = bodies(
            await reader.collect(lambda rs: len(rs) >= 3, keep=of_tenant(tenant), timeout=30)
        )
    events.sort(key=lambda e: e["time"])  # two topics: Kafka orders each, not both together
    kinds = [(e["type"], e["data"].get("mentor_id"), e["data"].get("outcome")) for e in events]
    assert kinds[:3] == [
        ("match-proposed", "best", None),
        ("match-ended", "best", "expired"),
        ("match-proposed", "second", None),
    ]


async def test_wrong_answers_are_dead_lettered_and_ratings_build_reputation(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant = unique("acme")
    bootstrap = infra.bootstrap_servers
    async with TopicReader(
        bootstrap, "match-proposed", "match-confirmed", "dlq.matching"
    ) as reader:
        await publish_raw(
            bootstrap,
            [enrolment_updated(tenant, "mentor", "m1"), enrolment_updated(tenant, "mentee", "n1")],
        )
        (proposed,) = bodies(await reader.collect(lambda rs: len(rs) >= 1, keep=of_tenant(tenant)))
        match_id = proposed["data"]["match_id"]

        def answer(
            person: str, decision: str = "accepted", who: str = tenant, match: str = match_id
        ) -> tuple[str, bytes, bytes]:
            return ingress(
                "match-responded",
                who,
                match,
                {"match_id": match, "person_id": person, "decision": decision},
            )

        def session(number: int, **ratings: int) -> tuple[str, bytes, bytes]:
            data = {
                "match_id": match_id,
                "session_id": f"s{number}",
                "duration_minutes": 45,
                **ratings,
            }
            return ingress("session-completed", tenant, match_id, data)

        await publish_raw(
            bootstrap,
            [
                answer("n1", match="nope"),
                answer("intruder"),
                answer("n1", "declined", who=unique("other")),
                session(0),
            ],
        )
        ours = ("nope", match_id)
        letters = await reader.collect(
            lambda rs: len(rs) >= 4,
            keep=lambda r: (
                r.topic == "dlq.matching" and json.loads(r.value)["data"].get("match_id") in ours
            ),
        )
        codes = sorted(dict(r.headers)["dlq-reason-code"].decode() for r in letters)
        assert codes == ["match_not_confirmed", "not_a_party", "unknown_match", "unknown_match"]

        await publish_raw(bootstrap, [answer("n1"), answer("m1")])
        await reader.collect(
            lambda rs: len(rs) >= 1,
            keep=lambda r: r.topic == "match-confirmed" and of_tenant(tenant)(r),
        )
        await publish_raw(
            bootstrap, [session(1, mentor_rating=2, mentee_rating=5), session(2, mentor_rating=3)]
        )
    await wait_for(
        db,
        "SELECT rating_count = 2 FROM matching.mentor_ratings WHERE tenant_id = $1 AND mentor_id = 'm1'",
        tenant,
    )
    history = await db.fetchrow("SELECT * FROM matching.pair_history WHERE match_id = $1", match_id)
    assert (history["sessions"], history["minutes"], history["mentor_rating_sum"]) == (2, 90, 5)


async def test_cohort_mode_waits_then_assigns_everyone_at_once(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    tenant = unique("cohort")
    bootstrap = infra.bootstrap_servers
    config = {"program_id": "prog", "mode": "cohort"}
    async with TopicReader(bootstrap, "match-proposed") as reader:
        await publish_raw(bootstrap, [ingress("program-configured", tenant, "prog", config)])
        await wait_for(db, "SELECT 1 FROM matching.programs WHERE tenant_id = $1", tenant)
        await publish_raw(
            bootstrap,
            [enrolment_updated(tenant, "mentor", f"m{i}", capacity=2) for i in range(3)]
            + [enrolment_updated(tenant, "mentee", f"n{i}") for i in range(8)],
        )
        await wait_for(db, "SELECT count(*) = 8 FROM matching.mentees WHERE tenant_id = $1", tenant)
        assert await reader.drain(1.5, keep=of_tenant(tenant)) == [], (
            "cohort mode waits for the request"
        )
        await publish_raw(
            bootstrap, [ingress("cohort-match-requested", tenant, "prog", {"program_id": "prog"})]
        )
        proposals = bodies(await reader.collect(lambda rs: len(rs) >= 6, keep=of_tenant(tenant)))
        proposals += bodies(await reader.drain(1.0, keep=of_tenant(tenant)))
    assert len(proposals) == 6, "every place filled, no more"
    load: dict[str, int] = {}
    for event in proposals:
        load[event["data"]["mentor_id"]] = load.get(event["data"]["mentor_id"], 0) + 1
        assert sum(i["contribution"] for i in event["data"]["explanation"]) == pytest.approx(
            event["data"]["score"], abs=1e-6
        )
    assert load == {"m0": 2, "m1": 2, "m2": 2}
    assert len({e["data"]["mentee_id"] for e in proposals}) == 6


async def test_enrolment_updates_newest_wins_role_changes_and_departures(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    """Updates applied several at a time keep the one-by-one meaning: in one stream, the newest
    update of a person wins whatever the order, a change of role ends the old role's relations,
    and an update registered before the person left is ignored."""
    tenant = unique("acme")
    bootstrap = infra.bootstrap_servers
    async with TopicReader(bootstrap, "match-proposed", "match-ended") as reader:
        await publish_raw(
            bootstrap,
            [
                enrolment_updated(tenant, "mentor", "dana"),
                enrolment_updated(tenant, "mentee", "eve"),
            ],
        )
        (proposed,) = bodies(await reader.collect(lambda rs: len(rs) >= 1, keep=of_tenant(tenant)))
        assert (proposed["data"]["mentee_id"], proposed["data"]["mentor_id"]) == ("eve", "dana")
        left = cloud_event(
            "enrolment-ended",
            tenant,
            {"program_id": "prog", "person_id": "finn", "erase": True},
            source="mentornet/profiles",
            time="2026-06-01T00:00:00Z",
        )
        await publish_raw(
            bootstrap,
            [
                # dana becomes a mentee: her open proposal as a mentor is cancelled
                enrolment_updated(tenant, "mentee", "dana", registered_at="2026-02-01T00:00:00Z"),
                # two updates of eve in one stream, the newer one first
                enrolment_updated(
                    tenant,
                    "mentee",
                    "eve",
                    timezone="Asia/Tokyo",
                    registered_at="2026-03-01T00:00:00Z",
                ),
                enrolment_updated(
                    tenant,
                    "mentee",
                    "eve",
                    timezone="America/Lima",
                    registered_at="2026-02-01T00:00:00Z",
                ),
                ("enrolment-ended", f"{tenant}:prog".encode(), json.dumps(left).encode()),
            ],
        )
        await wait_for(
            db, "SELECT count(*) = 1 FROM matching.departures WHERE tenant_id = $1", tenant
        )
        await publish_raw(  # finn's registration from before his departure, read after it
            bootstrap,
            [
                enrolment_updated(tenant, "mentee", "finn", registered_at="2026-05-01T00:00:00Z"),
                enrolment_updated(tenant, "mentee", "gus"),
            ],
        )
        ended = bodies(
            await reader.collect(
                lambda rs: any(e["type"] == "match-ended" for e in bodies(rs)),
                keep=of_tenant(tenant),
            )
        )
    assert [e["data"]["outcome"] for e in ended if e["type"] == "match-ended"] == ["cancelled"]
    await wait_for(  # the last record of the stream is applied, so everything before it is too
        db,
        "SELECT count(*) = 1 FROM matching.mentees WHERE tenant_id = $1 AND person_id = 'gus'",
        tenant,
    )
    mentees = {
        r["person_id"]: r["timezone"]
        for r in await db.fetch(
            "SELECT person_id, timezone FROM matching.mentees WHERE tenant_id = $1", tenant
        )
    }
    assert mentees == {"dana": "Europe/Paris", "eve": "Asia/Tokyo", "gus": "Europe/Paris"}
    assert (
        await db.fetchval("SELECT count(*) FROM matching.mentors WHERE tenant_id = $1", tenant) == 0
    )


async def test_the_database_refuses_a_proposal_past_a_mentors_capacity(
    db: asyncpg.Pool, matching: ServiceProcess
) -> None:
    """A replica's pool believed a place was free that another replica took: the proposals'
    statement raises StalePool and, its transaction rolled back, nothing was written."""
    tenant = unique("stale")
    await db.execute(
        """INSERT INTO matching.mentors (tenant_id, program_id, person_id, languages, timezone,
                expertise, capacity, load, registered_at)
           VALUES ($1, 'prog', 'full', '{en}', 'Europe/Paris', '[]', 2, 2, now()),
                  ($1, 'prog', 'roomy', '{en}', 'Europe/Paris', '[]', 2, 0, now())""",
        tenant,
    )
    await db.execute(
        """INSERT INTO matching.mentees (tenant_id, program_id, person_id, languages, timezone,
                goals, registered_at)
           SELECT $1, 'prog', p, '{en}', 'Europe/Paris', '[]', now() FROM unnest($2::text[]) p""",
        tenant,
        ["n1", "n2", "n3"],
    )

    def proposal(mentee: str, mentor: str) -> NewProposal:
        return NewProposal(
            match_id=unique("match"),
            tenant_id=tenant,
            program_id="prog",
            mentee_id=mentee,
            mentor_id=mentor,
            score=0.5,
            explanation="[]",
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )

    async def propose(*proposals: NewProposal) -> None:
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL search_path = matching, public")
            await insert_proposals(conn, proposals)

    async def state() -> tuple[int, dict[str, int], dict[str, str]]:
        matches = await db.fetchval(
            "SELECT count(*) FROM matching.matches WHERE tenant_id = $1", tenant
        )
        loads = await db.fetch(
            "SELECT person_id, load FROM matching.mentors WHERE tenant_id = $1", tenant
        )
        mentees = await db.fetch(
            "SELECT person_id, status FROM matching.mentees WHERE tenant_id = $1", tenant
        )
        return (
            matches,
            {r["person_id"]: r["load"] for r in loads},
            {r["person_id"]: r["status"] for r in mentees},
        )

    waiting = {"n1": "waiting", "n2": "waiting", "n3": "waiting"}
    with pytest.raises(StalePool):
        await propose(proposal("n1", "roomy"), proposal("n2", "full"))
    assert await state() == (0, {"full": 2, "roomy": 0}, waiting)
    with pytest.raises(StalePool):  # two places asked of a mentor with two: three in all
        await propose(proposal("n1", "roomy"), proposal("n2", "roomy"), proposal("n3", "roomy"))
    assert await state() == (0, {"full": 2, "roomy": 0}, waiting)

    await propose(proposal("n1", "roomy"), proposal("n2", "roomy"))
    assert await state() == (
        2,
        {"full": 2, "roomy": 2},
        {**waiting, "n1": "proposed", "n2": "proposed"},
    )
    for table in ("matches", "mentors", "mentees"):  # nothing left for an expiry job to find
        await db.execute(f"DELETE FROM matching.{table} WHERE tenant_id = $1", tenant)
