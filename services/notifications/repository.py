"""SQL of notifications (schema `notifications`): contacts, matches, sessions, deliveries and
preferences.

Writes take whole batches (unnest arrays) because one consumer batch can hold thousands of
events; rows with the same key are merged in Python first, since one INSERT ... ON CONFLICT
may not touch a row twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from services.notifications.domain import (
    Cause,
    Finished,
    KnownMatch,
    MatchParties,
    NewDelivery,
    Outcome,
    Session,
)
from services.notifications.settings import TenantChannel
from shared.runtime.db.columns import columns
from shared.runtime.db.retention import Purge

NOTIFY_CHANNEL = "notifications_deliveries"
# Finished deliveries are kept as long as the inbox: a replayed event must find its delivery.
FINISHED_DELIVERIES = Purge("deliveries", "created_at", "state <> 'pending'")
# Sessions are kept as long too: a second event for the same session must find the first. (One
# still pending that long belongs to a proposal that never ended: nothing will release it.)
FEEDBACK_SESSIONS = Purge("feedback_sessions", "received_at")
MATCH_STATES = ("proposed", "confirmed", "ended")  # a later state never goes back


# --- contacts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactRow:
    tenant_id: str
    person_id: str
    role: str
    display_name: str
    email: str
    languages: list[str]
    timezone: str
    registered_at: datetime
    expertise: list[dict[str, Any]] = field(default_factory=list)  # mentors: topic, level
    goals: list[dict[str, Any]] = field(default_factory=list)  # mentees: topic, priority
    offers: list[str] = field(default_factory=list)  # mentees: topics they can share
    learning_interests: list[str] = field(default_factory=list)  # mentors: topics to learn


async def upsert_contacts(conn: asyncpg.Connection, rows: Sequence[ContactRow]) -> int:
    """Store what is newer than both the stored registration and any erasure; then wake the
    deliveries that were waiting for these people. Returns how many contacts changed."""
    latest: dict[tuple[str, str], ContactRow] = {}
    for row in rows:
        key = (row.tenant_id, row.person_id)
        if key not in latest or latest[key].registered_at < row.registered_at:
            latest[key] = row
    if not latest:
        return 0
    values = list(latest.values())
    await conn.execute(  # the contact locks (see record_outcomes), sorted: no deadlock
        """SELECT pg_advisory_xact_lock(hashtext(k))
           FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted""",
        [f"contact:{t}:{p}" for t, p in latest],
    )
    changed = await conn.fetch(
        """INSERT INTO contacts AS c (tenant_id, person_id, role, display_name, email, languages,
                                      timezone, registered_at, expertise, goals, offers,
                                      learning_interests)
           SELECT n.tenant_id, n.person_id, n.role, n.display_name, n.email,
                  ARRAY(SELECT jsonb_array_elements_text(n.languages::jsonb)), n.timezone,
                  n.registered_at, n.expertise::jsonb, n.goals::jsonb, n.offers::jsonb,
                  n.learning_interests::jsonb
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
                       $12::text[])
                AS n(tenant_id, person_id, role, display_name, email, languages, timezone,
                     registered_at, expertise, goals, offers, learning_interests)
           ON CONFLICT (tenant_id, person_id) DO UPDATE SET
               role = EXCLUDED.role, display_name = EXCLUDED.display_name,
               email = EXCLUDED.email, languages = EXCLUDED.languages,
               timezone = EXCLUDED.timezone, registered_at = EXCLUDED.registered_at,
               expertise = EXCLUDED.expertise, goals = EXCLUDED.goals,
               offers = EXCLUDED.offers, learning_interests = EXCLUDED.learning_interests
           WHERE (c.registered_at IS NULL OR c.registered_at < EXCLUDED.registered_at)
             AND (c.erased_at IS NULL OR c.erased_at < EXCLUDED.registered_at)
           RETURNING tenant_id, person_id""",
        *columns(
            (
                (
                    r.tenant_id,
                    r.person_id,
                    r.role,
                    r.display_name,
                    r.email,
                    json.dumps(r.languages),
                    r.timezone,
                    r.registered_at,
                    json.dumps(r.expertise),
                    json.dumps(r.goals),
                    json.dumps(r.offers),
                    json.dumps(r.learning_interests),
                )
                for r in values
            ),
            12,
        ),
    )
    if changed:
        await conn.execute(
            """UPDATE deliveries d SET waiting = false, next_attempt_at = now()
               FROM unnest($1::text[], $2::text[]) AS c(tenant_id, person_id)
               WHERE d.state = 'pending' AND d.waiting AND d.tenant_id = c.tenant_id
                 AND (d.recipient_id = c.person_id OR d.partner_id = c.person_id)""",
            *columns(((r["tenant_id"], r["person_id"]) for r in changed), 2),
        )
    return len(changed)


async def erase_contacts(
    conn: asyncpg.Connection, people: Sequence[tuple[str, str, datetime]]
) -> int:
    """Blank the contact data of (tenant, person, when) and cancel what is pending for them.

    A tombstone row is written even for someone never seen, so a registration older than the
    erasure that arrives late is ignored. Returns how many pending deliveries were cancelled."""
    latest: dict[tuple[str, str], datetime] = {}
    for tenant, person, at in people:
        latest[(tenant, person)] = max(at, latest.get((tenant, person), at))
    if not latest:
        return 0
    tenants, persons = columns(latest, 2)
    await conn.execute(
        """INSERT INTO contacts AS c (tenant_id, person_id, erased_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
           ON CONFLICT (tenant_id, person_id) DO UPDATE SET
               role = NULL, display_name = NULL, email = NULL, languages = '{}',
               timezone = NULL, expertise = NULL, goals = NULL, offers = NULL,
               learning_interests = NULL,
               erased_at = GREATEST(c.erased_at, EXCLUDED.erased_at)
           WHERE c.registered_at IS NULL OR c.registered_at <= EXCLUDED.erased_at""",
        tenants,
        persons,
        list(latest.values()),
    )
    await conn.execute(  # what the proposals said of them (their goals, say) goes too
        """UPDATE matches m SET explanation = NULL
           FROM unnest($1::text[], $2::text[]) AS e(tenant_id, person_id)
           WHERE m.tenant_id = e.tenant_id AND m.explanation IS NOT NULL
             AND e.person_id IN (m.mentee_id, m.mentor_id)""",
        tenants,
        persons,
    )
    status = await conn.execute(
        """UPDATE deliveries d SET state = 'cancelled', last_error = 'recipient erased'
           FROM unnest($1::text[], $2::text[]) AS e(tenant_id, person_id)
           WHERE d.state = 'pending' AND d.tenant_id = e.tenant_id
             AND d.recipient_id = e.person_id
             AND (d.locked_until IS NULL OR d.locked_until < now())""",
        tenants,
        persons,
    )
    await conn.execute(  # rows waiting for them as the partner: the worker cancels them now
        """UPDATE deliveries d SET waiting = false, next_attempt_at = now()
           FROM unnest($1::text[], $2::text[]) AS e(tenant_id, person_id)
           WHERE d.state = 'pending' AND d.waiting AND d.tenant_id = e.tenant_id
             AND d.partner_id = e.person_id""",
        tenants,
        persons,
    )
    return int(status.split()[-1])


# --- matches and answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class MatchRow:
    tenant_id: str
    match_id: str
    program_id: str
    mentee_id: str
    mentor_id: str
    expires_at: datetime | None
    state: str
    confirmed: bool = False  # the event says the match was confirmed (whatever its state)
    outcome: str | None = None  # match-ended's
    explanation: str | None = None  # match-proposed's, as JSON text


async def lock_matches(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> None:
    """Take the matches' locks (sorted: no deadlock) until the transaction ends. A session and
    its match's confirmation or end may be applied side by side by two replicas: serialised
    per match, a session held as pending is always seen by the confirmation that releases it.
    Callers take these after any contact locks (upsert_contacts), never before."""
    if keys:
        await conn.execute(
            """SELECT pg_advisory_xact_lock(hashtext(k))
               FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted""",
            [f"match:{t}:{m}" for t, m in keys],
        )


async def upsert_matches(conn: asyncpg.Connection, rows: Sequence[MatchRow]) -> None:
    """Remember who is who in each match; the state only moves forward, whatever the order in
    which the proposal, confirmation and end arrive, `confirmed` stays true once set, and the
    first outcome read is kept (a match ends once)."""
    merged: dict[tuple[str, str], MatchRow] = {}
    for row in rows:
        key = (row.tenant_id, row.match_id)
        known = merged.get(key)
        if known is None:
            merged[key] = row
            continue
        merged[key] = MatchRow(
            *key,
            row.program_id,
            row.mentee_id,
            row.mentor_id,
            row.expires_at or known.expires_at,
            max(known.state, row.state, key=MATCH_STATES.index),
            known.confirmed or row.confirmed,
            known.outcome or row.outcome,
            known.explanation or row.explanation,
        )
    if not merged:
        return
    values = list(merged.values())
    await conn.execute(
        """INSERT INTO matches AS m (tenant_id, match_id, program_id, mentee_id, mentor_id,
                                     expires_at, state, confirmed, outcome, explanation)
           SELECT n.tenant_id, n.match_id, n.program_id, n.mentee_id, n.mentor_id, n.expires_at,
                  n.state, n.confirmed, n.outcome, n.explanation::jsonb
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::timestamptz[], $7::text[], $8::bool[], $9::text[], $11::text[])
                AS n(tenant_id, match_id, program_id, mentee_id, mentor_id, expires_at, state,
                     confirmed, outcome, explanation)
           ON CONFLICT (tenant_id, match_id) DO UPDATE SET
               explanation = COALESCE(m.explanation, EXCLUDED.explanation),
               expires_at = COALESCE(EXCLUDED.expires_at, m.expires_at),
               state = CASE
                   WHEN array_position($10::text[], EXCLUDED.state)
                        > array_position($10::text[], m.state) THEN EXCLUDED.state
                   ELSE m.state END,
               confirmed = m.confirmed OR EXCLUDED.confirmed,
               outcome = COALESCE(m.outcome, EXCLUDED.outcome)""",
        *columns(
            (
                (
                    r.tenant_id,
                    r.match_id,
                    r.program_id,
                    r.mentee_id,
                    r.mentor_id,
                    r.expires_at,
                    r.state,
                    r.confirmed,
                    r.outcome,
                )
                for r in values
            ),
            9,
        ),
        list(MATCH_STATES),
        [r.explanation for r in values],
    )


async def matches(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], KnownMatch]:
    """(tenant, match) -> who is who, state, whether confirmed, how it ended; for the keys
    that are known."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT m.tenant_id, m.match_id, m.mentee_id, m.mentor_id, m.program_id, m.state,
                  m.confirmed, m.outcome
           FROM matches m JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, match_id)
             ON m.tenant_id = k.tenant_id AND m.match_id = k.match_id""",
        *columns(keys, 2),
    )
    return {
        (r["tenant_id"], r["match_id"]): KnownMatch(
            MatchParties(r["mentee_id"], r["mentor_id"], r["program_id"]),
            r["state"],
            r["confirmed"],
            r["outcome"],
        )
        for r in rows
    }


# --- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    """A completed session, what caused it, and whether its feedback is planned or held."""

    cause: Cause
    session: Session
    state: str  # 'planned' or 'pending'

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.cause.tenant_id, self.session.match_id, self.session.session_id)

    @property
    def match_key(self) -> tuple[str, str]:
        return (self.cause.tenant_id, self.session.match_id)


async def record_sessions(conn: asyncpg.Connection, rows: Sequence[SessionRow]) -> list[SessionRow]:
    """Store sessions not seen before; returns those, the first event of each session (in
    batch order). Another event for a session already stored is left out: its feedback
    requests exist (or are held) already."""
    first: dict[tuple[str, str, str], SessionRow] = {}
    for row in rows:
        first.setdefault(row.key, row)
    if not first:
        return []
    stored = await conn.fetch(
        """INSERT INTO feedback_sessions (tenant_id, match_id, session_id, event_id, state,
                                          duration_minutes, correlation_id, traceparent)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::int[], $7::text[], $8::text[])
           ON CONFLICT DO NOTHING
           RETURNING tenant_id, match_id, session_id""",
        *columns(
            (
                (
                    *r.key,
                    r.cause.event_id,
                    r.state,
                    r.session.duration_minutes,
                    r.cause.correlation_id,
                    r.cause.traceparent,
                )
                for r in first.values()
            ),
            8,
        ),
    )
    new = {(r["tenant_id"], r["match_id"], r["session_id"]) for r in stored}
    return [row for key, row in first.items() if key in new]


async def release_sessions(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> list[tuple[SessionRow, MatchParties]]:
    """The held sessions of these matches, now confirmed: marked planned and returned with
    who is who, so their feedback requests are planned in this same transaction."""
    if not keys:
        return []
    rows = await conn.fetch(
        """UPDATE feedback_sessions s SET state = 'planned'
           FROM unnest($1::text[], $2::text[]) AS k(tenant_id, match_id), matches m
           WHERE s.state = 'pending' AND s.tenant_id = k.tenant_id AND s.match_id = k.match_id
             AND m.tenant_id = s.tenant_id AND m.match_id = s.match_id AND m.confirmed
           RETURNING s.tenant_id, s.match_id, s.session_id, s.event_id, s.duration_minutes,
                     s.correlation_id, s.traceparent, m.mentee_id, m.mentor_id, m.program_id""",
        *columns(keys, 2),
    )
    return [
        (
            SessionRow(
                Cause(r["tenant_id"], r["event_id"], r["correlation_id"], r["traceparent"]),
                Session(r["match_id"], r["session_id"], r["duration_minutes"]),
                "planned",
            ),
            MatchParties(r["mentee_id"], r["mentor_id"], r["program_id"]),
        )
        for r in rows
    ]


async def drop_sessions(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> int:
    """The held sessions of these matches, ended without a confirmation, will never ask for
    feedback. Returns how many were dropped."""
    if not keys:
        return 0
    status = await conn.execute(
        """UPDATE feedback_sessions s SET state = 'dropped'
           FROM unnest($1::text[], $2::text[]) AS k(tenant_id, match_id), matches m
           WHERE s.state = 'pending' AND s.tenant_id = k.tenant_id AND s.match_id = k.match_id
             AND m.tenant_id = s.tenant_id AND m.match_id = s.match_id AND NOT m.confirmed""",
        *columns(keys, 2),
    )
    return int(status.split()[-1])


async def record_responses(
    conn: asyncpg.Connection, answers: Sequence[tuple[str, str, str, str]]
) -> None:
    """(tenant, match, person, decision) answered: remember it (the first decision read) and
    drop their pending reminder."""
    if not answers:
        return
    await conn.execute(
        """INSERT INTO responses (tenant_id, match_id, person_id, decision)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
           ON CONFLICT (tenant_id, match_id, person_id) DO UPDATE
               SET decision = COALESCE(responses.decision, EXCLUDED.decision)""",
        *columns(answers, 4),
    )
    arrays = columns([a[:3] for a in answers], 3)
    await conn.execute(
        """UPDATE deliveries d SET state = 'cancelled', last_error = 'answered'
           FROM unnest($1::text[], $2::text[], $3::text[]) AS a(tenant_id, match_id, person_id)
           WHERE d.state = 'pending' AND d.kind = 'match-reminder'
             AND d.tenant_id = a.tenant_id AND d.match_id = a.match_id
             AND d.recipient_id = a.person_id
             AND (d.locked_until IS NULL OR d.locked_until < now())""",
        *arrays,
    )


async def responded(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str, str]]:
    """(tenant, match, person) of everyone who answered one of these proposals."""
    if not keys:
        return set()
    rows = await conn.fetch(
        """SELECT r.tenant_id, r.match_id, r.person_id FROM responses r
           JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, match_id)
             ON r.tenant_id = k.tenant_id AND r.match_id = k.match_id""",
        *columns(keys, 2),
    )
    return {(r["tenant_id"], r["match_id"], r["person_id"]) for r in rows}


async def cancel_for_matches(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], kinds: Sequence[str], why: str
) -> None:
    """Cancel what no longer makes sense once a match is confirmed or over. Rows being sent
    right now are left alone, so the record stays true to what was sent."""
    if not keys:
        return
    await conn.execute(
        """UPDATE deliveries d SET state = 'cancelled', last_error = $4
           FROM unnest($1::text[], $2::text[]) AS k(tenant_id, match_id)
           WHERE d.state = 'pending' AND d.tenant_id = k.tenant_id AND d.match_id = k.match_id
             AND d.kind = ANY($3::text[])
             AND (d.locked_until IS NULL OR d.locked_until < now())""",
        *columns(keys, 2),
        list(kinds),
        why,
    )


# --- channels ----------------------------------------------------------------------------------


async def channels(conn: asyncpg.Connection, tenants: Sequence[str]) -> dict[str, list[str]]:
    """The channels of each tenant; tenants without a row get email."""
    rows = await conn.fetch(
        "SELECT tenant_id, channel FROM tenant_channels WHERE tenant_id = ANY($1::text[])",
        list(set(tenants)),
    )
    found: dict[str, list[str]] = {}
    for r in rows:
        found.setdefault(r["tenant_id"], []).append(r["channel"])
    return {t: sorted(found.get(t, ["email"])) for t in tenants}


async def seed_tenant_channels(pool: asyncpg.Pool, rows: Sequence[TenantChannel]) -> None:
    """Upsert NOTIFICATIONS_TENANTS at startup (rows not listed there are kept)."""
    if not rows:
        return
    await pool.executemany(
        """INSERT INTO tenant_channels (tenant_id, channel, endpoint, secret)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id, channel)
           DO UPDATE SET endpoint = EXCLUDED.endpoint, secret = EXCLUDED.secret""",
        [
            (
                r.tenant_id,
                r.channel,
                r.endpoint,
                r.secret.get_secret_value() if r.secret else None,
            )
            for r in rows
        ],
    )


# --- deliveries ------------------------------------------------------------------------------


async def insert_deliveries(conn: asyncpg.Connection, rows: Sequence[NewDelivery]) -> int:
    """Insert new rows; one that exists already (a redelivered event) is left as it is.
    Returns how many new rows are pending (worth waking the worker for)."""
    if not rows:
        return 0
    records = [
        (
            r.id,
            r.tenant_id,
            r.source_event_id,
            r.planned.recipient_id,
            r.channel,
            r.planned.kind,
            r.planned.category,
            r.planned.match_id,
            r.planned.partner_id,
            json.dumps(r.planned.context),
            r.correlation_id,
            r.next_attempt_at,
            r.give_up_at,
            r.traceparent,
        )
        for r in rows
    ]
    inserted = await conn.fetchval(
        """WITH new AS (
               INSERT INTO deliveries (id, tenant_id, source_event_id, recipient_id, channel,
                   kind, category, match_id, partner_id, context, correlation_id,
                   next_attempt_at, give_up_at, state, last_error, traceparent)
               SELECT n.id, n.tenant_id, n.source_event_id, n.recipient_id, n.channel, n.kind,
                      n.category, n.match_id, n.partner_id, n.context::jsonb,
                      n.correlation_id, n.next_attempt_at, n.give_up_at,
                      CASE WHEN c.erased THEN 'cancelled' ELSE 'pending' END,
                      CASE WHEN c.erased THEN 'recipient erased' END, n.traceparent
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                           $11::text[], $12::timestamptz[], $13::timestamptz[], $14::text[])
                    AS n(id, tenant_id, source_event_id, recipient_id, channel, kind, category,
                         match_id, partner_id, context, correlation_id, next_attempt_at,
                         give_up_at, traceparent)
               LEFT JOIN LATERAL (  -- an erased person is recorded as not notified, never sent
                   SELECT k.erased_at IS NOT NULL AND k.email IS NULL AS erased FROM contacts k
                   WHERE k.tenant_id = n.tenant_id AND k.person_id = n.recipient_id) c ON true
               ON CONFLICT DO NOTHING RETURNING state = 'pending' AS pending)
           SELECT count(*) FILTER (WHERE pending) FROM new""",
        *columns(records, 14),
    )
    return int(inserted)


async def notify_worker(conn: asyncpg.Connection) -> None:
    """Wake the delivery workers when this transaction commits."""
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")


_CLAIM = """
WITH claimed AS (
    UPDATE deliveries d SET locked_until = now() + make_interval(secs => $2)
    FROM (
        SELECT id FROM deliveries
        WHERE state = 'pending' AND next_attempt_at <= now()
          AND (locked_until IS NULL OR locked_until < now())
          AND ($3::text[] IS NULL OR tenant_id = ANY($3::text[]))
        ORDER BY next_attempt_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ) due
    WHERE d.id = due.id
    RETURNING d.*
)
SELECT c.id, c.tenant_id, c.source_event_id, c.recipient_id, c.channel, c.kind, c.category,
       c.match_id, c.partner_id, c.context, c.correlation_id, c.attempts, c.give_up_at,
       c.last_error, c.traceparent,
       r.person_id IS NOT NULL AS recipient_known, r.display_name AS recipient_name,
       r.email AS recipient_email, r.languages AS recipient_languages,
       r.timezone AS recipient_timezone,
       p.person_id IS NOT NULL AS partner_known, p.display_name AS partner_name,
       p.email AS partner_email, p.languages AS partner_languages,
       p.timezone AS partner_timezone, p.expertise AS partner_expertise,
       p.goals AS partner_goals, p.offers AS partner_offers,
       p.learning_interests AS partner_learning_interests,
       ch.endpoint, ch.secret,
       EXISTS (SELECT 1 FROM opt_outs o
               WHERE o.tenant_id = c.tenant_id AND o.person_id = c.recipient_id
                 AND o.category = c.category) AS opted_out
FROM claimed c
LEFT JOIN contacts r ON r.tenant_id = c.tenant_id AND r.person_id = c.recipient_id
LEFT JOIN contacts p ON p.tenant_id = c.tenant_id AND p.person_id = c.partner_id
LEFT JOIN tenant_channels ch ON ch.tenant_id = c.tenant_id AND ch.channel = c.channel
"""


async def claim(
    pool: asyncpg.Pool, limit: int, lease_seconds: float, tenants: Sequence[str] | None
) -> list[asyncpg.Record]:
    """Lease up to `limit` due rows, with all it takes to send them, in one round trip.
    SKIP LOCKED lets replicas claim side by side; the lease (locked_until) keeps a row ours
    after the claiming transaction commits, and frees it if we die."""
    return await pool.fetch(_CLAIM, limit, lease_seconds, list(tenants) if tenants else None)


async def seconds_until_due(pool: asyncpg.Pool, tenants: Sequence[str] | None) -> float | None:
    """How long until the next unleased pending row is due (None: nothing pending)."""
    return await pool.fetchval(
        """SELECT GREATEST(0, EXTRACT(EPOCH FROM next_attempt_at - now()))::float8
           FROM deliveries
           WHERE state = 'pending' AND (locked_until IS NULL OR locked_until < now())
             AND ($1::text[] IS NULL OR tenant_id = ANY($1::text[]))
           ORDER BY next_attempt_at LIMIT 1""",
        list(tenants) if tenants else None,
    )


async def record_outcomes(conn: asyncpg.Connection, outcomes: Sequence[Outcome]) -> list[Finished]:
    """Write a batch of outcomes in one statement and release the leases; returns the rows
    that just became sent or failed. The guard on finished states makes this idempotent.

    A row the worker found "waiting for contact" is retried at once if the contacts arrived
    meanwhile: their arrival woke only rows already marked waiting. Both sides take the
    people's contact locks first, so the check below reads a snapshot taken after any contact
    transaction that could have missed this row has committed (no lost wake-up)."""
    if not outcomes:
        return []
    waiting = [o.id for o in outcomes if o.waiting]
    if waiting:
        await conn.execute(
            """SELECT pg_advisory_xact_lock(hashtext(k)) FROM (
                   SELECT DISTINCT 'contact:' || d.tenant_id || ':' || p AS k
                   FROM deliveries d, unnest(ARRAY[d.recipient_id, d.partner_id]) AS p
                   WHERE d.id = ANY($1::uuid[]) AND p IS NOT NULL ORDER BY k) AS sorted""",
            waiting,
        )
    # Not `d.state = 'pending'`, although it means the same (the CHECK allows four states): that
    # matches the pending-only indexes, and with statistics taken while little was pending
    # (a log of 500,000 finished rows is analysed again only after 50,000 changes) the planner
    # read every pending row through one of them to join 200 outcomes: 140 ms a batch with
    # 47,000 pending, where the primary key takes 2 ms.
    rows = await conn.fetch(
        """UPDATE deliveries d SET
               state = u.state,
               attempts = d.attempts + u.attempted::int,
               next_attempt_at = CASE WHEN u.waiting AND contacts_now_known(d) THEN now()
                                      ELSE COALESCE(u.next_attempt_at, d.next_attempt_at) END,
               last_error = u.error,
               waiting = u.waiting AND NOT contacts_now_known(d),
               locked_until = NULL,
               sent_at = CASE WHEN u.state = 'sent' THEN now() END
           FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::timestamptz[], $5::text[],
                       $6::bool[]) AS u(id, state, attempted, next_attempt_at, error, waiting)
           WHERE d.id = u.id AND d.state NOT IN ('sent', 'failed', 'cancelled')
           RETURNING d.id, d.state, d.tenant_id, d.recipient_id, d.channel, d.kind,
                     d.source_event_id, d.attempts, d.last_error, d.correlation_id""",
        *columns(
            ((o.id, o.state, o.attempted, o.next_attempt_at, o.error, o.waiting) for o in outcomes),
            6,
        ),
    )
    return [
        Finished(
            id=r["id"],
            state=r["state"],
            tenant_id=r["tenant_id"],
            recipient_id=r["recipient_id"],
            channel=r["channel"],
            kind=r["kind"],
            source_event_id=r["source_event_id"],
            attempts=r["attempts"],
            error=r["last_error"],
            correlation_id=r["correlation_id"],
        )
        for r in rows
        if r["state"] in ("sent", "failed")
    ]


# --- answer pages ------------------------------------------------------------------------------

# An answer is kept to refuse a second one while its link works (feedback links last
# FEEDBACK_LINK_DAYS, less than RETENTION_DAYS); a proposal's answer stays in `responses`.
ANSWERS = Purge("answers", "answered_at")


@dataclass(frozen=True)
class PageContact:
    """What the answer page and a proposal email may show of a person (never their email
    address)."""

    display_name: str
    languages: list[str]
    timezone: str | None
    expertise: list[dict[str, Any]]
    goals: list[dict[str, Any]]
    offers: list[str]
    learning_interests: list[str]

    def as_person(self, role: str) -> dict[str, Any]:
        """For reading.profile, with their side of this match as the role."""
        return {
            "display_name": self.display_name,
            "role": role,
            "languages": self.languages,
            "timezone": self.timezone,
            "expertise": self.expertise,
            "goals": self.goals,
            "offers": self.offers,
            "learning_interests": self.learning_interests,
        }


@dataclass(frozen=True)
class PageMatch:
    program_id: str
    mentee_id: str
    mentor_id: str
    state: str  # proposed, confirmed or ended
    confirmed: bool
    outcome: str | None  # match-ended's, once ended
    expires_at: datetime | None  # the proposal's deadline
    explanation: list[dict[str, Any]]  # empty once either person was erased

    def role_of(self, person_id: str) -> str | None:
        return {self.mentee_id: "mentee", self.mentor_id: "mentor"}.get(person_id)


@dataclass(frozen=True)
class EarlierAnswer:
    answer: str | None  # accepted, declined or a rating; None: an app's answer of old
    answered_at: datetime | None  # None: answered in an app (no time kept)


@dataclass(frozen=True)
class AnswerView:
    """All one answer link needs: the match, the reader, the other person, an earlier answer."""

    match: PageMatch | None
    reader: PageContact | None  # None: not known (yet), or erased
    other: PageContact | None
    earlier: EarlierAnswer | None
    other_decision: str | None = None  # how the other person answered the proposal, if they did


async def answer_view(
    conn: asyncpg.Connection, tenant_id: str, match_id: str, person_id: str, action: str
) -> AnswerView:
    """What the page of (tenant, match, person, action) shows and checks, in one query. A
    proposal answered through an app counts as answered too (its `responses` row)."""
    row = await conn.fetchrow(
        """SELECT m.match_id IS NOT NULL AS match_known, m.program_id, m.mentee_id,
                  m.mentor_id, m.state, m.confirmed, m.outcome, m.expires_at, m.explanation,
                  r.display_name AS r_name, r.languages AS r_languages,
                  r.timezone AS r_timezone, r.expertise AS r_expertise, r.goals AS r_goals,
                  r.offers AS r_offers, r.learning_interests AS r_learning_interests,
                  o.display_name AS o_name, o.languages AS o_languages,
                  o.timezone AS o_timezone, o.expertise AS o_expertise, o.goals AS o_goals,
                  o.offers AS o_offers, o.learning_interests AS o_learning_interests,
                  a.answer, a.answered_at, rs.person_id IS NOT NULL AS responded, rs.decision,
                  ro.decision AS other_decision
           FROM (VALUES ($1::text, $2::text, $3::text, $4::text))
                AS k(tenant_id, match_id, person_id, action)
           LEFT JOIN matches m ON m.tenant_id = k.tenant_id AND m.match_id = k.match_id
           LEFT JOIN contacts r ON r.tenant_id = k.tenant_id AND r.person_id = k.person_id
           LEFT JOIN contacts o ON o.tenant_id = k.tenant_id
                AND o.person_id = CASE k.person_id WHEN m.mentee_id THEN m.mentor_id
                                                   WHEN m.mentor_id THEN m.mentee_id END
           LEFT JOIN answers a ON a.tenant_id = k.tenant_id AND a.match_id = k.match_id
                AND a.person_id = k.person_id AND a.action = k.action
           LEFT JOIN responses rs ON k.action = 'respond' AND rs.tenant_id = k.tenant_id
                AND rs.match_id = k.match_id AND rs.person_id = k.person_id
           LEFT JOIN responses ro ON k.action = 'respond' AND ro.tenant_id = k.tenant_id
                AND ro.match_id = k.match_id AND ro.person_id = CASE k.person_id
                    WHEN m.mentee_id THEN m.mentor_id WHEN m.mentor_id THEN m.mentee_id END""",
        tenant_id,
        match_id,
        person_id,
        action,
    )
    match = None
    if row["match_known"]:
        match = PageMatch(
            row["program_id"],
            row["mentee_id"],
            row["mentor_id"],
            row["state"],
            row["confirmed"],
            row["outcome"],
            row["expires_at"],
            _json_list(row["explanation"]),
        )
    earlier = None
    if row["answer"] is not None:
        earlier = EarlierAnswer(row["answer"], row["answered_at"])
    elif row["responded"]:
        earlier = EarlierAnswer(row["decision"], None)
    return AnswerView(
        match, contact_shown(row, "r_"), contact_shown(row, "o_"), earlier, row["other_decision"]
    )


def contact_shown(row: asyncpg.Record | Mapping[str, Any], prefix: str) -> PageContact | None:
    """What may be shown of the person whose contact columns in `row` start with `prefix`."""
    if row[f"{prefix}name"] is None:  # never seen, or erased
        return None
    return PageContact(
        row[f"{prefix}name"],
        list(row[f"{prefix}languages"] or []),
        row[f"{prefix}timezone"],
        _json_list(row[f"{prefix}expertise"]),
        _json_list(row[f"{prefix}goals"]),
        # optional, like the events' fields: a row without them (one built by hand) shows none
        _topics(row.get(f"{prefix}offers")),
        _topics(row.get(f"{prefix}learning_interests")),
    )


def jsonb(value: Any) -> Any:
    """A jsonb column, whether the pool decodes jsonb or hands it over as text."""
    return json.loads(value) if isinstance(value, str) else value


def _json_list(value: Any) -> list[dict[str, Any]]:
    return list(jsonb(value) or [])


def _topics(value: Any) -> list[str]:
    return [str(topic) for topic in jsonb(value) or []]


async def record_answer(
    conn: asyncpg.Connection,
    tenant_id: str,
    match_id: str,
    person_id: str,
    action: str,
    answer: str,
    event_id: str,
) -> bool:
    """Keep an answer given through a link; False when one was kept already (a link works
    once). `answer` is what the page shows back later (the decision or the rating); a reason or
    a comment, personal words, goes only in the event."""
    inserted = await conn.fetchval(
        """INSERT INTO answers (tenant_id, match_id, person_id, action, answer, event_id)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT DO NOTHING RETURNING true""",
        tenant_id,
        match_id,
        person_id,
        action,
        answer,
        event_id,
    )
    return bool(inserted)
