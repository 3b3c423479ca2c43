"""SQL of matching (schema `matching`). Every change to a program runs under its program lock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import TypeAdapter

from services.matching.domain.config import LearnedWeights, ProgramConfig
from services.matching.domain.learning import Outcome, succeeded
from services.matching.domain.match import Match, MatchStatus, Side
from services.matching.domain.relationship import Relationship
from services.matching.domain.scoring import Mentee, Mentor
from shared.contract.events import EnrolmentUpdated, ExplanationItem, FeedbackGiven
from shared.runtime.db.columns import columns


async def lock_programs(conn: asyncpg.Connection, programs: Sequence[tuple[str, str]]) -> None:
    """Serialise all work on these programs across replicas; sorted, so no deadlock (one
    statement takes them all, one after the other in that order)."""
    if not programs:
        return
    await conn.execute(
        """SELECT pg_advisory_xact_lock(hashtext(k))
           FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted""",
        sorted({f"matching:{tenant_id}:{program_id}" for tenant_id, program_id in programs}),
    )


async def load_config(conn: asyncpg.Connection, tenant_id: str, program_id: str) -> ProgramConfig:
    """The program's configuration with the weights its outcomes taught (see `learned_of`)."""
    config, _ = await load_program(conn, tenant_id, program_id)
    return config


async def load_program(
    conn: asyncpg.Connection, tenant_id: str, program_id: str
) -> tuple[ProgramConfig, int]:
    """The program's configuration (as `load_config`) and its pool's version, in one round trip."""
    row = await conn.fetchrow(
        f"""SELECT p.config, {_LEARNED}, coalesce(v.version, 0) AS pool_version
            FROM (VALUES ($1::text, $2::text)) AS k(tenant_id, program_id)
            LEFT JOIN programs p USING (tenant_id, program_id)
            LEFT JOIN learned_weights l USING (tenant_id, program_id)
            LEFT JOIN pool_versions v USING (tenant_id, program_id)""",
        tenant_id,
        program_id,
    )
    config = ProgramConfig.from_json(row["config"]).with_learned(learned_of(row))
    return config, int(row["pool_version"])


async def save_config(
    conn: asyncpg.Connection,
    tenant_id: str,
    program_id: str,
    config: dict[str, object],
    at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO programs (tenant_id, program_id, config, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id, program_id) DO UPDATE
           SET config = EXCLUDED.config, updated_at = EXCLUDED.updated_at
           WHERE programs.updated_at <= EXCLUDED.updated_at""",
        tenant_id,
        program_id,
        config,
        at,
    )


Person = tuple[str, str, str]  # (tenant_id, program_id, person_id)

# What an enrolment update writes (name -> SQL type): the columns both roles share, then each
# role's own. The key (tenant, program, person) and registered_at come on top.
_SHARED_COLUMNS = {
    "languages": "text[]",
    "timezone": "text",
    "department": "text",
    "seniority": "int",
    "manager_id": "text",
}
_ROLE_COLUMNS = {
    "mentor": {"expertise": "jsonb", "capacity": "int", "learning_interests": "text[]"},
    "mentee": {"goals": "jsonb", "offers": "text[]"},
}


async def record_departure(conn: asyncpg.Connection, person: Person, at: datetime) -> None:
    """Remember that the person left the program at `at` (the latest departure wins)."""
    await conn.execute(
        """INSERT INTO departures (tenant_id, program_id, person_id, ended_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id, program_id, person_id)
           DO UPDATE SET ended_at = GREATEST(departures.ended_at, EXCLUDED.ended_at)""",
        *person,
        at,
    )


@dataclass(frozen=True)
class Standing:
    """Where a person stands in a program before an update of their enrolment."""

    left_at: datetime | None  # when they last left the program (None: never)
    roles: frozenset[str]  # the roles they are enrolled in now ("mentor", "mentee")


async def standing(conn: asyncpg.Connection, people: Sequence[Person]) -> dict[Person, Standing]:
    """Each person's departure and current roles, in one round trip."""
    if not people:
        return {}
    rows = await conn.fetch(
        """SELECT p.t, p.g, p.i, d.ended_at,
                  EXISTS (SELECT 1 FROM mentors m WHERE (m.tenant_id, m.program_id, m.person_id)
                                                        = (p.t, p.g, p.i)) AS mentor,
                  EXISTS (SELECT 1 FROM mentees m WHERE (m.tenant_id, m.program_id, m.person_id)
                                                        = (p.t, p.g, p.i)) AS mentee
           FROM unnest($1::text[], $2::text[], $3::text[]) AS p(t, g, i)
           LEFT JOIN departures d
             ON d.tenant_id = p.t AND d.program_id = p.g AND d.person_id = p.i""",
        *columns(people, 3),
    )
    return {
        (r["t"], r["g"], r["i"]): Standing(
            r["ended_at"], frozenset(role for role in ("mentor", "mentee") if r[role])
        )
        for r in rows
    }


async def upsert_enrolments(
    conn: asyncpg.Connection, role: str, enrolments: Sequence[tuple[str, EnrolmentUpdated]]
) -> set[Person]:
    """Store each (tenant, enrolment) of one role where it is newer than what is stored, in one
    statement (each person at most once); returns who was stored. Mentor changes bump the pool."""
    if not enrolments:
        return set()
    table = "mentors" if role == "mentor" else "mentees"
    updated = {**_SHARED_COLUMNS, **_ROLE_COLUMNS[role], "registered_at": "timestamptz"}
    written = {"tenant_id": "text", "program_id": "text", "person_id": "text", **updated}
    rows = [
        {"tenant_id": tenant, **e.model_dump(mode="json", include=set(written))}
        for tenant, e in enrolments
    ]
    columns = ", ".join(written)
    stored = await conn.fetch(
        f"""INSERT INTO {table} AS m ({columns})
            SELECT {columns} FROM jsonb_to_recordset($1::jsonb)
                AS x({", ".join(f"{c} {t}" for c, t in written.items())})
            ON CONFLICT (tenant_id, program_id, person_id) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in updated)}
            WHERE m.registered_at < EXCLUDED.registered_at
            RETURNING tenant_id, program_id, person_id""",
        rows,
    )
    people = {(r["tenant_id"], r["program_id"], r["person_id"]) for r in stored}
    if role == "mentor":
        for tenant_id, program_id in sorted({(t, g) for t, g, _ in people}):
            await bump_pool(conn, tenant_id, program_id)
    return people


async def delete_enrolment(conn: asyncpg.Connection, role: str, person: Person) -> None:
    table = "mentors" if role == "mentor" else "mentees"
    deleted = await conn.fetchval(
        f"DELETE FROM {table} WHERE tenant_id = $1 AND program_id = $2 AND person_id = $3 RETURNING true",
        *person,
    )
    if deleted and role == "mentor":
        tenant_id, program_id, _ = person
        await bump_pool(conn, tenant_id, program_id)


def _person_fields(r: asyncpg.Record) -> dict[str, Any]:
    """What mentors and mentees share, from a row of either table."""
    return {
        "person_id": r["person_id"],
        "languages": tuple(r["languages"]),
        "timezone": r["timezone"],
        "department": r["department"],
        "seniority": r["seniority"],
        "manager_id": r["manager_id"],
    }


async def load_mentors(conn: asyncpg.Connection, tenant_id: str, program_id: str) -> list[Mentor]:
    rows = await conn.fetch(
        """SELECT m.person_id, m.languages, m.timezone, m.department, m.seniority, m.manager_id,
                  m.expertise, m.capacity, m.load, m.learning_interests,
                  coalesce(r.rating_sum, 0) AS rating_sum, coalesce(r.rating_count, 0) AS rating_count
           FROM mentors m
           LEFT JOIN mentor_ratings r ON r.tenant_id = m.tenant_id AND r.mentor_id = m.person_id
           WHERE m.tenant_id = $1 AND m.program_id = $2
             AND NOT EXISTS (SELECT 1 FROM availability a  -- a paused mentor gets no proposal
                             WHERE a.tenant_id = m.tenant_id AND a.program_id = m.program_id
                               AND a.person_id = m.person_id AND a.paused_until IS NOT NULL)
           ORDER BY m.person_id""",
        tenant_id,
        program_id,
    )
    return [
        Mentor(
            **_person_fields(r),
            expertise=tuple((x["topic"], x["level"]) for x in r["expertise"]),
            capacity=r["capacity"],
            load=r["load"],
            rating_sum=r["rating_sum"],
            rating_count=r["rating_count"],
            learning_interests=tuple(r["learning_interests"]),
        )
        for r in rows
    ]


READ_CHUNK = 5000  # rows read per round trip when there may be many


# Mentors a mentee was already proposed to and never will be again: after a no, a silence, or a
# relationship that ran (to its end or not). Read with the mentee, in the same round trip.
_PAST_MENTORS = """ARRAY(SELECT x.mentor_id FROM matches x
                         WHERE x.tenant_id = m.tenant_id AND x.program_id = m.program_id
                           AND x.mentee_id = m.person_id
                           AND x.status IN ('declined', 'expired', 'completed', 'ended_early'))"""


async def waiting_mentees(
    conn: asyncpg.Connection,
    tenant_id: str,
    program_id: str,
    only: Sequence[str] | None = None,
    limit: int = 5000,
) -> list[Mentee]:
    """Waiting mentees, longest-waiting first; `only` narrows to mentees that just arrived.

    The whole waitlist is read READ_CHUNK at a time (a cohort may have 100,000): between two
    chunks the event loop runs, instead of stalling while every row is decoded at once. The
    mentees who just arrived are a few: one round trip, without a cursor."""
    query = f"""SELECT person_id, languages, timezone, department, seniority, manager_id, goals,
                       offers, waiting_since, waiting_reason, {_PAST_MENTORS} AS past_mentors
                FROM mentees m
                WHERE tenant_id = $1 AND program_id = $2 AND status = 'waiting'
                  AND ($3::text[] IS NULL OR person_id = ANY($3::text[]))
                ORDER BY waiting_since, person_id LIMIT $4"""
    arguments = (tenant_id, program_id, list(only) if only is not None else None, limit)
    if only is not None and len(only) <= READ_CHUNK:
        return [_mentee(r) for r in await conn.fetch(query, *arguments)]
    cursor = await conn.cursor(query, *arguments)
    mentees: list[Mentee] = []
    while True:
        rows = await cursor.fetch(READ_CHUNK)
        mentees += [_mentee(r) for r in rows]
        if len(rows) < READ_CHUNK:
            return mentees


def _mentee(r: asyncpg.Record) -> Mentee:
    return Mentee(
        **_person_fields(r),
        goals=tuple((g["topic"], g["priority"]) for g in r["goals"]),
        waiting_since=r["waiting_since"],
        offers=tuple(r["offers"]),
        waiting_reason=r["waiting_reason"],
        past_mentors=tuple(r["past_mentors"]),
    )


async def record_waiting_reasons(
    conn: asyncpg.Connection, tenant_id: str, program_id: str, reasons: Sequence[tuple[str, str]]
) -> None:
    """Why each of these waiting mentees got no proposal at the last try."""
    await conn.execute(
        """UPDATE mentees m SET waiting_reason = r.reason
           FROM unnest($3::text[], $4::text[]) AS r(person_id, reason)
           WHERE m.tenant_id = $1 AND m.program_id = $2 AND m.person_id = r.person_id""",
        tenant_id,
        program_id,
        *columns(reasons, 2),
    )


@dataclass(frozen=True)
class NewProposal:
    match_id: str
    tenant_id: str
    program_id: str
    mentee_id: str
    mentor_id: str
    score: float
    explanation: str  # JSON text: see `explanation_json`
    expires_at: datetime
    criteria: str | None = None  # JSON text: each criterion's value, what learning reads


_EXPLANATION = TypeAdapter(list[ExplanationItem])


def explanation_json(items: list[ExplanationItem]) -> str:
    return _EXPLANATION.dump_json(items).decode()  # one call for all items (the pipe is hot)


class StalePool(Exception):
    """A replica's in-memory pool was out of date: the database refused to exceed a capacity."""


async def pool_version(conn: asyncpg.Connection, tenant_id: str, program_id: str) -> int:
    version = await conn.fetchval(
        "SELECT version FROM pool_versions WHERE tenant_id = $1 AND program_id = $2",
        tenant_id,
        program_id,
    )
    return int(version or 0)


async def bump_pool(conn: asyncpg.Connection, tenant_id: str, program_id: str) -> None:
    """Tell every replica's cache that this program's pool changed behind its back."""
    await conn.execute(
        """INSERT INTO pool_versions AS v (tenant_id, program_id, version) VALUES ($1, $2, 1)
           ON CONFLICT (tenant_id, program_id) DO UPDATE SET version = v.version + 1""",
        tenant_id,
        program_id,
    )


CAPACITY_GUARD = "mentor_within_capacity"  # the trigger refusing a load above capacity


async def insert_proposals(
    conn: asyncpg.Connection, proposals: Sequence[NewProposal]
) -> int | None:
    """Store proposals of one program and take one place of each mentor, in the caller's
    transaction: the proposals, the mentors' places, the mentees' status and the program's pool
    version in one statement. Returns the new pool version (None when there was nothing to store).

    The version moves so that every other replica's cached pool is reloaded before it proposes
    again; the caller's own pool already took these places (see `pools.PoolCache.proposed`).
    The database is the last guard of capacities, whatever the caller believed: a mentor's load
    is only raised where it stays within capacity, and when one is refused this raises StalePool
    (the caller's transaction must roll back; the batch is then retried on fresh pools). Should
    the trigger guarding every statement (`CAPACITY_GUARD`) refuse it first, that is StalePool too.
    """
    if not proposals:
        return None
    first = proposals[0]
    try:
        row = await conn.fetchrow(
            """WITH proposed AS (
                   INSERT INTO matches (match_id, tenant_id, program_id, mentee_id, mentor_id,
                        status, score, explanation, expires_at, criteria)
                   SELECT p.match_id, $1, $2, p.mentee_id, p.mentor_id, 'proposed', p.score,
                          p.explanation::jsonb, p.expires_at, p.criteria::jsonb
                   FROM unnest($3::text[], $4::text[], $5::text[], $6::float8[], $7::text[],
                               $8::timestamptz[], $9::text[])
                        AS p(match_id, mentee_id, mentor_id, score, explanation, expires_at,
                             criteria)
               ), slots AS (
                   UPDATE mentors m SET load = m.load + n.count
                   FROM (SELECT mentor_id, count(*)::int AS count
                         FROM unnest($5::text[]) AS mentor_id GROUP BY mentor_id) n
                   WHERE m.tenant_id = $1 AND m.program_id = $2 AND m.person_id = n.mentor_id
                     AND m.load + n.count <= m.capacity
                   RETURNING m.person_id
               ), waiting AS (
                   UPDATE mentees SET status = 'proposed', waiting_reason = NULL
                   WHERE tenant_id = $1 AND program_id = $2 AND person_id = ANY($4::text[])
               ), version AS (
                   INSERT INTO pool_versions AS v (tenant_id, program_id, version)
                   VALUES ($1, $2, 1)
                   ON CONFLICT (tenant_id, program_id) DO UPDATE SET version = v.version + 1
                   RETURNING v.version
               )
               SELECT (SELECT count(*) FROM slots) AS taken, (SELECT version FROM version)""",
            first.tenant_id,
            first.program_id,
            *columns(
                (
                    (
                        p.match_id,
                        p.mentee_id,
                        p.mentor_id,
                        p.score,
                        p.explanation,
                        p.expires_at,
                        p.criteria,
                    )
                    for p in proposals
                ),
                7,
            ),
        )
    except asyncpg.CheckViolationError as refused:
        if refused.constraint_name != CAPACITY_GUARD:
            raise
        raise StalePool(str(refused)) from refused
    mentors = len({p.mentor_id for p in proposals})
    if row["taken"] < mentors:
        raise StalePool(
            f"{mentors - row['taken']} of {mentors} mentors of program {first.program_id!r}"
            " have no place left for these proposals"
        )
    return int(row["version"])


_MATCH = """match_id, tenant_id, program_id, mentee_id, mentor_id, status,
            mentee_accepted_at, mentor_accepted_at, confirmed_at"""


def _match(r: asyncpg.Record) -> Match:
    return Match(
        match_id=r["match_id"],
        tenant_id=r["tenant_id"],
        program_id=r["program_id"],
        mentee_id=r["mentee_id"],
        mentor_id=r["mentor_id"],
        status=MatchStatus(r["status"]),
        mentee_accepted_at=r["mentee_accepted_at"],
        mentor_accepted_at=r["mentor_accepted_at"],
        confirmed_at=r["confirmed_at"],
    )


async def matches_by_id(conn: asyncpg.Connection, match_ids: Sequence[str]) -> dict[str, Match]:
    if not match_ids:
        return {}
    rows = await conn.fetch(
        f"SELECT {_MATCH} FROM matches WHERE match_id = ANY($1::text[])", list(match_ids)
    )
    return {r["match_id"]: _match(r) for r in rows}


async def get_match(conn: asyncpg.Connection, match_id: str) -> Match | None:
    row = await conn.fetchrow(f"SELECT {_MATCH} FROM matches WHERE match_id = $1", match_id)
    return None if row is None else _match(row)


async def record_acceptance(
    conn: asyncpg.Connection, match: Match, side: Side, at: datetime
) -> Match:
    """The match once `side` accepted (the first acceptance of a side is the one kept)."""
    column = "mentee_accepted_at" if side == "mentee" else "mentor_accepted_at"
    row = await conn.fetchrow(
        f"""UPDATE matches SET {column} = coalesce({column}, $2) WHERE match_id = $1
            RETURNING {_MATCH}""",
        match.match_id,
        at,
    )
    return _match(row)


async def confirm(conn: asyncpg.Connection, match: Match, at: datetime) -> None:
    """The relationship starts: the relationship job looks at it at once (see `due_relationships`)."""
    await conn.execute(
        """UPDATE matches SET status = 'confirmed', closed_at = NULL, confirmed_at = $2, due_at = $2
           WHERE match_id = $1""",
        match.match_id,
        at,
    )
    await conn.execute(
        "UPDATE mentees SET status = 'matched' WHERE tenant_id = $1 AND program_id = $2 AND person_id = $3",
        match.tenant_id,
        match.program_id,
        match.mentee_id,
    )


MenteeAfter = Literal["waiting", "first_in_line", "done"]


async def close(
    conn: asyncpg.Connection,
    match: Match,
    status: MatchStatus,
    at: datetime,
    mentee: MenteeAfter = "waiting",
) -> None:
    """End a proposal or relationship and free the mentor's place. The mentee waits again (at
    the back of the line, or `first_in_line`: still waiting since they first waited, so they are
    proposed to before later arrivals), or is `done` with the program."""
    await conn.execute(
        "UPDATE matches SET status = $2, closed_at = $3, due_at = NULL WHERE match_id = $1",
        match.match_id,
        status.value,
        at,
    )
    await conn.execute(
        """UPDATE mentors SET load = greatest(load - 1, 0)
           WHERE tenant_id = $1 AND program_id = $2 AND person_id = $3""",
        match.tenant_id,
        match.program_id,
        match.mentor_id,
    )
    await bump_pool(conn, match.tenant_id, match.program_id)
    await conn.execute(
        """UPDATE mentees SET status = CASE WHEN $5 = 'done' THEN 'done' ELSE 'waiting' END,
                              waiting_since = CASE WHEN $5 = 'waiting' THEN $4 ELSE waiting_since END
           WHERE tenant_id = $1 AND program_id = $2 AND person_id = $3""",
        match.tenant_id,
        match.program_id,
        match.mentee_id,
        at,
        mentee,
    )


async def open_matches_of(conn: asyncpg.Connection, person: Person) -> list[Match]:
    """The person's proposals and running relationships in the program, on either side."""
    rows = await conn.fetch(
        f"""SELECT {_MATCH} FROM matches WHERE tenant_id = $1 AND program_id = $2
              AND (mentee_id = $3 OR mentor_id = $3) AND status IN ('proposed', 'confirmed')""",
        *person,
    )
    return [_match(r) for r in rows]


async def due_programs(
    conn: asyncpg.Connection, now: datetime, limit: int = 50
) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT DISTINCT tenant_id, program_id FROM matches
           WHERE status = 'proposed' AND expires_at <= $1 LIMIT $2""",
        now,
        limit,
    )
    return [(r["tenant_id"], r["program_id"]) for r in rows]


async def due_proposals(
    conn: asyncpg.Connection, tenant_id: str, program_id: str, now: datetime
) -> list[Match]:
    rows = await conn.fetch(
        f"""SELECT {_MATCH} FROM matches WHERE tenant_id = $1 AND program_id = $2
              AND status = 'proposed' AND expires_at <= $3 ORDER BY expires_at""",
        tenant_id,
        program_id,
        now,
    )
    return [_match(r) for r in rows]


async def session_recorded(conn: asyncpg.Connection, match: Match, session_id: str) -> bool:
    """Whether this session of the match was already counted (reported again, maybe under
    another event id)."""
    found = await conn.fetchval(
        "SELECT true FROM sessions WHERE tenant_id = $1 AND match_id = $2 AND session_id = $3",
        match.tenant_id,
        match.match_id,
        session_id,
    )
    return bool(found)


async def record_session(
    conn: asyncpg.Connection,
    match: Match,
    session_id: str,
    minutes: int,
    mentor_rating: int | None,
    mentee_rating: int | None,
    held_at: datetime,
) -> None:
    """Count a session not counted before (see `session_recorded`): pair history, the
    relationship's last session, and the mentor's reputation when the mentee rated them."""
    await conn.execute(
        "INSERT INTO sessions (tenant_id, match_id, session_id) VALUES ($1, $2, $3)",
        match.tenant_id,
        match.match_id,
        session_id,
    )
    await conn.execute(  # a new spell begins: the relationship job looks at it again
        """UPDATE matches SET last_session_at = greatest(last_session_at, $2), stalled_at = NULL,
                              due_at = $2
           WHERE match_id = $1""",
        match.match_id,
        held_at,
    )
    both = mentor_rating is not None and mentee_rating is not None
    await conn.execute(
        """INSERT INTO pair_history AS p (match_id, sessions, minutes, mentor_rating_sum,
                mentee_rating_sum, ratings)
           VALUES ($1, 1, $2, $3, $4, $5)
           ON CONFLICT (match_id) DO UPDATE SET sessions = p.sessions + 1,
                minutes = p.minutes + EXCLUDED.minutes,
                mentor_rating_sum = p.mentor_rating_sum + EXCLUDED.mentor_rating_sum,
                mentee_rating_sum = p.mentee_rating_sum + EXCLUDED.mentee_rating_sum,
                ratings = p.ratings + EXCLUDED.ratings""",
        match.match_id,
        minutes,
        mentor_rating or 0,
        mentee_rating or 0,
        int(both),
    )
    if mentor_rating is not None:
        await rate_mentor(conn, match, mentor_rating)


async def rate_mentor(conn: asyncpg.Connection, match: Match, rating: int) -> None:
    """The mentee's rating of the mentor counts in the mentor's reputation across the tenant."""
    await conn.execute(
        """INSERT INTO mentor_ratings AS r (tenant_id, mentor_id, rating_sum, rating_count)
           VALUES ($1, $2, $3, 1)
           ON CONFLICT (tenant_id, mentor_id) DO UPDATE
           SET rating_sum = r.rating_sum + EXCLUDED.rating_sum, rating_count = r.rating_count + 1""",
        match.tenant_id,
        match.mentor_id,
        rating,
    )
    for row in await conn.fetch(
        "SELECT program_id FROM mentors WHERE tenant_id = $1 AND person_id = $2",
        match.tenant_id,
        match.mentor_id,
    ):
        await bump_pool(conn, match.tenant_id, row["program_id"])


# --- relationships ---------------------------------------------------------------------------


async def record_ending(
    conn: asyncpg.Connection,
    match: Match,
    ended_by: str | None,
    role: str | None,
    reason: str | None,
    note: str | None,
) -> None:
    """Who ended a relationship, why, and their note (kept for coordinators, never logged)."""
    await conn.execute(
        """UPDATE matches SET ended_by = $2, ended_by_role = $3, end_reason = $4, end_note = $5
           WHERE match_id = $1""",
        match.match_id,
        ended_by,
        role,
        reason,
        note,
    )


async def reconsider_relationships(
    conn: asyncpg.Connection, tenant_id: str, program_id: str, now: datetime
) -> None:
    """The program's timings changed: the relationship job looks at each relationship again."""
    await conn.execute(
        """UPDATE matches SET due_at = $3
           WHERE tenant_id = $1 AND program_id = $2 AND status = 'confirmed'""",
        tenant_id,
        program_id,
        now,
    )


async def due_relationship_programs(
    conn: asyncpg.Connection, now: datetime, limit: int = 50
) -> list[tuple[str, str]]:
    """Programs with a relationship or a mentor's pause that has something due."""
    rows = await conn.fetch(
        """(SELECT DISTINCT tenant_id, program_id FROM matches
            WHERE status = 'confirmed' AND due_at <= $1 LIMIT $2)
           UNION
           (SELECT DISTINCT tenant_id, program_id FROM availability
            WHERE paused_until <= $1 LIMIT $2)""",
        now,
        limit,
    )
    return [(r["tenant_id"], r["program_id"]) for r in rows]


async def due_relationships(
    conn: asyncpg.Connection, tenant_id: str, program_id: str, now: datetime
) -> list[tuple[Match, Relationship]]:
    rows = await conn.fetch(
        f"""SELECT {_MATCH}, last_session_at, checkins_done, stalled_at FROM matches
            WHERE tenant_id = $1 AND program_id = $2 AND status = 'confirmed' AND due_at <= $3
            ORDER BY due_at, match_id""",
        tenant_id,
        program_id,
        now,
    )
    return [
        (
            _match(r),
            Relationship(
                confirmed_at=r["confirmed_at"],
                last_session_at=r["last_session_at"],
                checkins_done=r["checkins_done"],
                stalled_at=r["stalled_at"],
            ),
        )
        for r in rows
    ]


async def record_follow_up(
    conn: asyncpg.Connection,
    match: Match,
    checkins_done: int,
    stalled_at: datetime | None,
    due_at: datetime | None,
) -> None:
    await conn.execute(
        "UPDATE matches SET checkins_done = $2, stalled_at = $3, due_at = $4 WHERE match_id = $1",
        match.match_id,
        checkins_done,
        stalled_at,
        due_at,
    )


async def record_availability(
    conn: asyncpg.Connection, person: Person, paused_until: datetime | None, at: datetime
) -> bool:
    """Store a mentor's pause (None: available again) said at `at`, unless a later word is
    stored already; returns whether it was stored. Their program's pool moves either way."""
    stored = await conn.fetchval(
        """INSERT INTO availability AS a (tenant_id, program_id, person_id, paused_until, updated_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, program_id, person_id) DO UPDATE
           SET paused_until = EXCLUDED.paused_until, updated_at = EXCLUDED.updated_at
           WHERE a.updated_at <= EXCLUDED.updated_at
           RETURNING true""",
        *person,
        paused_until,
        at,
    )
    if stored:
        await bump_pool(conn, person[0], person[1])
    return bool(stored)


async def resume_mentors(
    conn: asyncpg.Connection, tenant_id: str, program_id: str, now: datetime
) -> int:
    """End the program's pauses whose `until` has passed; returns how many mentors are back."""
    status = await conn.execute(
        """UPDATE availability SET paused_until = NULL
           WHERE tenant_id = $1 AND program_id = $2 AND paused_until <= $3""",
        tenant_id,
        program_id,
        now,
    )
    resumed = int(status.split()[-1])
    if resumed:
        await bump_pool(conn, tenant_id, program_id)
    return resumed


async def record_feedback(
    conn: asyncpg.Connection, match: Match, role: Side, feedback: FeedbackGiven, at: datetime
) -> None:
    """Store one person's feedback: a check-in answers the latest check-in asked (0 before any),
    a closing feedback is one per person. A later word on the same one replaces an earlier."""
    await conn.execute(
        """INSERT INTO feedback AS f (tenant_id, match_id, person_id, role, kind, checkin, rating,
                                      goals, learned, learned_topics, comment, given_at)
           SELECT $1, $2, $3, $4, $5,
                  CASE WHEN $5 = 'closing' THEN 0 ELSE m.checkins_done END,
                  $6, $7::jsonb, $8, $9::jsonb, $10, $11
           FROM matches m WHERE m.match_id = $2
           ON CONFLICT (tenant_id, match_id, person_id, kind, checkin) DO UPDATE SET
               rating = EXCLUDED.rating, goals = EXCLUDED.goals, learned = EXCLUDED.learned,
               learned_topics = EXCLUDED.learned_topics, comment = EXCLUDED.comment,
               given_at = EXCLUDED.given_at
           WHERE f.given_at <= EXCLUDED.given_at""",
        match.tenant_id,
        match.match_id,
        feedback.person_id,
        role,
        feedback.kind,
        feedback.rating,
        None if feedback.goals is None else json.dumps([g.model_dump() for g in feedback.goals]),
        feedback.learned,
        None if feedback.learned_topics is None else json.dumps(feedback.learned_topics),
        feedback.comment,
        at,
    )


async def erase_free_text(conn: asyncpg.Connection, person: Person) -> None:
    """What people wrote in the program's relationships the person was part of (ending notes,
    feedback comments and topics) is erased with them: it may speak of them. Ratings stay."""
    tenant_id, program_id, person_id = person
    await conn.execute(
        """UPDATE matches SET end_note = NULL
           WHERE tenant_id = $1 AND program_id = $2 AND (mentee_id = $3 OR mentor_id = $3)
             AND end_note IS NOT NULL""",
        *person,
    )
    await conn.execute(
        """UPDATE feedback f SET comment = NULL, learned_topics = NULL
           FROM matches m
           WHERE m.tenant_id = $1 AND m.program_id = $2 AND (m.mentee_id = $3 OR m.mentor_id = $3)
             AND f.tenant_id = m.tenant_id AND f.match_id = m.match_id""",
        *person,
    )
    await conn.execute(
        "DELETE FROM availability WHERE tenant_id = $1 AND program_id = $2 AND person_id = $3",
        tenant_id,
        program_id,
        person_id,
    )


# --- weights learned from outcomes (`learning: on`) --------------------------------------------

# A match is an outcome once its verdict is known; `learning.succeeded` says which statuses are.
OUTCOME_STATUSES = [s.value for s in MatchStatus if succeeded(s.value, None, None) is not None]
LEARNING_STEP = 10  # new (or lost) outcomes before a program learns again: at least this many,
LEARNING_STEP_SHARE = 0.05  # or this share of the outcomes last read, when that is more
LEARNING_BATCH = 20  # programs one round of the learning job looks at, at most

_LEARNED = "l.weights, l.learned, l.outcomes, l.in_force, l.learned_at"


def learned_of(row: asyncpg.Record) -> LearnedWeights | None:
    """The learned weights in a row read with `_LEARNED` (None: never learned)."""
    if row["weights"] is None:
        return None
    return LearnedWeights(
        weights=dict(row["weights"]),
        learned=dict(row["learned"]),
        outcomes=row["outcomes"],
        in_force=row["in_force"],
    )


async def learning_due(
    conn: asyncpg.Connection,
    programs: Sequence[tuple[str, str]] | None = None,
    limit: int = LEARNING_BATCH,
) -> list[tuple[str, str]]:
    """Programs with `learning: on` to learn again (of `programs`, when given): never read yet,
    configured anew since the last run, or whose outcomes moved by a step since (see
    LEARNING_STEP). Feedback given since (a low closing rating) is read at the next step."""
    tenants, ids = columns(programs, 2) if programs is not None else (None, None)
    rows = await conn.fetch(
        """SELECT p.tenant_id, p.program_id
           FROM programs p
           LEFT JOIN learning_runs r USING (tenant_id, program_id)
           CROSS JOIN LATERAL (
               SELECT count(*) AS outcomes FROM matches m
               WHERE m.tenant_id = p.tenant_id AND m.program_id = p.program_id
                 AND m.criteria IS NOT NULL AND m.status = ANY($1::text[])) o
           WHERE p.config->>'learning' = 'on'
             AND ($5::text[] IS NULL OR (p.tenant_id, p.program_id) IN
                  (SELECT * FROM unnest($5::text[], $6::text[])))
             AND o.outcomes >= $2
             AND (r.tenant_id IS NULL OR r.config_at IS DISTINCT FROM p.updated_at
                  OR abs(o.outcomes - r.outcomes) >= greatest($2, ceil(r.outcomes * $3)))
           ORDER BY r.ran_at NULLS FIRST, p.tenant_id, p.program_id
           LIMIT $4""",
        OUTCOME_STATUSES,
        LEARNING_STEP,
        LEARNING_STEP_SHARE,
        limit,
        tenants,
        ids,
    )
    return [(r["tenant_id"], r["program_id"]) for r in rows]


@dataclass(frozen=True)
class LearningRun:
    """What one learning run reads: the program's outcomes, and which run it is."""

    outcomes: list[Outcome]
    number: int  # 1 for the program's first run
    config_at: datetime | None  # the configuration's time (programs.updated_at)


async def read_outcomes(conn: asyncpg.Connection, tenant_id: str, program_id: str) -> LearningRun:
    """Every outcome of the program, oldest first, with its verdict: the match's status and end,
    and the mentee's closing rating."""
    rows = await conn.fetch(
        """SELECT m.criteria, m.status, m.end_reason, f.rating AS mentee_rating
           FROM matches m
           LEFT JOIN feedback f ON f.tenant_id = m.tenant_id AND f.match_id = m.match_id
                AND f.person_id = m.mentee_id AND f.kind = 'closing' AND f.checkin = 0
           WHERE m.tenant_id = $1 AND m.program_id = $2
             AND m.criteria IS NOT NULL AND m.status = ANY($3::text[])
           ORDER BY m.proposed_at, m.match_id""",
        tenant_id,
        program_id,
        OUTCOME_STATUSES,
    )
    outcomes = []
    for r in rows:
        success = succeeded(r["status"], r["end_reason"], r["mentee_rating"])
        if success is not None:
            outcomes.append(Outcome(values=r["criteria"], success=success))
    state = await conn.fetchrow(
        """SELECT coalesce(r.runs, 0) + 1 AS number, p.updated_at AS config_at
           FROM (VALUES ($1::text, $2::text)) AS k(tenant_id, program_id)
           LEFT JOIN programs p USING (tenant_id, program_id)
           LEFT JOIN learning_runs r USING (tenant_id, program_id)""",
        tenant_id,
        program_id,
    )
    return LearningRun(outcomes, state["number"], state["config_at"])


async def record_learning(
    conn: asyncpg.Connection,
    tenant_id: str,
    program_id: str,
    run: LearningRun,
    learned: LearnedWeights | None,
    at: datetime,
) -> None:
    """Note the run (so the job waits for the next step), and keep what it taught, if anything:
    weights learned before stay in force while the outcomes teach nothing new."""
    await conn.execute(
        """INSERT INTO learning_runs AS r (tenant_id, program_id, runs, outcomes, config_at, ran_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, program_id) DO UPDATE SET runs = EXCLUDED.runs,
               outcomes = EXCLUDED.outcomes, config_at = EXCLUDED.config_at,
               ran_at = EXCLUDED.ran_at""",
        tenant_id,
        program_id,
        run.number,
        len(run.outcomes),
        run.config_at,
        at,
    )
    if learned is None:
        return
    await conn.execute(
        """INSERT INTO learned_weights (tenant_id, program_id, weights, learned, outcomes,
                                        in_force, learned_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (tenant_id, program_id) DO UPDATE SET weights = EXCLUDED.weights,
               learned = EXCLUDED.learned, outcomes = EXCLUDED.outcomes,
               in_force = EXCLUDED.in_force, learned_at = EXCLUDED.learned_at""",
        tenant_id,
        program_id,
        learned.weights,
        learned.learned,
        learned.outcomes,
        learned.in_force,
        at,
    )
