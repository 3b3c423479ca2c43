"""Use cases of matching, each inside the batch transaction and under the program's lock.

A batch first locks every program it touches, then applies events in order, noting which
programs need (re)matching; then each such program in continuous mode proposes to its waiting
mentees. Problems with a valid event (an unknown match, a person who is not part of it) are
answered in the dead-letter topic, in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from services.matching import repository as repo
from services.matching.domain.config import ProgramConfig
from services.matching.domain.explain import explain
from services.matching.domain.scoring import Candidate, Mentee, rank
from services.matching.metrics import MatchingMetrics
from services.matching.pools import PoolCache
from shared.contract.envelope import CloudEvent
from shared.contract.events import MatchConfirmed, MatchEnded, MatchProposed
from shared.runtime.db.outbox import OutboxRecord, enqueue
from shared.runtime.db.pool import transaction
from shared.runtime.dead_letters import dead_letter
from shared.runtime.logging import get_logger
from shared.runtime.pipeline import Incoming, bind_event
from shared.runtime.service import Runtime

log = get_logger(__name__)
SERVICE = "matching"
SOURCE = "mentornet/matching"
MATCH_EVENTS = frozenset({"match-responded", "session-completed"})


@dataclass
class Work:
    """What one transaction does: records to publish and programs to rematch."""

    now: datetime
    pools: PoolCache
    metrics: MatchingMetrics
    out: list[OutboxRecord] = field(default_factory=list)
    # program -> mentees to try (None: the whole waitlist, because capacity was freed or added)
    rematch: dict[tuple[str, str], set[str] | None] = field(default_factory=dict)
    cause: dict[tuple[str, str], CloudEvent] = field(default_factory=dict)

    def wants(
        self, tenant_id: str, program_id: str, cause: CloudEvent, mentee: str | None = None
    ) -> None:
        key = (tenant_id, program_id)
        self.cause.setdefault(key, cause)
        if mentee is None:
            self.rematch[key] = None
        elif key not in self.rematch or self.rematch[key] is not None:
            self.rematch.setdefault(key, set()).add(mentee)  # type: ignore[union-attr]

    def publish(self, topic: str, key: str, event: CloudEvent) -> None:
        self.out.append(OutboxRecord.of_event(topic, key, event))


async def apply_events(
    conn: asyncpg.Connection, batch: list[Incoming], pools: PoolCache, metrics: MatchingMetrics
) -> list[OutboxRecord]:
    work = Work(now=datetime.now(UTC), pools=pools, metrics=metrics)
    matches = await repo.matches_by_id(
        conn, [i.event.data.match_id for i in batch if i.event.type in MATCH_EVENTS]
    )
    programs = [
        (i.event.tenantid, i.event.data.program_id)
        for i in batch
        if hasattr(i.event.data, "program_id")
    ]
    programs += [(m["tenant_id"], m["program_id"]) for m in matches.values()]
    await repo.lock_programs(conn, programs)
    for run in _runs(batch):
        if run[0].event.type == "enrolment-updated":
            await on_enrolments_updated(conn, work, run)
            continue
        (incoming,) = run
        with bind_event(incoming.event):
            await _HANDLERS[incoming.event.type](conn, work, incoming)
    await rematch(conn, work)
    return work.out


def _runs(batch: list[Incoming]) -> list[list[Incoming]]:
    """The batch in order, cut into runs applied together: consecutive enrolment updates of
    distinct people (the common case, a few statements for all), every other event alone."""
    runs: list[list[Incoming]] = []
    people: set[repo.Person] = set()
    for incoming in batch:
        event = incoming.event
        if event.type != "enrolment-updated":
            runs.append([incoming])
            people = set()
            continue
        person = (event.tenantid, event.data.program_id, event.data.person_id)
        if not runs or runs[-1][0].event.type != "enrolment-updated" or person in people:
            runs.append([])
            people = set()
        runs[-1].append(incoming)
        people.add(person)
    return runs


def _person(incoming: Incoming) -> repo.Person:
    return (incoming.event.tenantid, incoming.event.data.program_id, incoming.event.data.person_id)


async def on_enrolments_updated(conn: asyncpg.Connection, work: Work, run: list[Incoming]) -> None:
    """Enrolment updates of distinct people: store each one newer than what is known, unless the
    person left the program after it was registered."""
    departed = await repo.departures(conn, [_person(i) for i in run])
    run = [
        i
        for i in run  # an update older than the person's departure, read after it, is ignored
        if _person(i) not in departed or i.event.data.registered_at > departed[_person(i)]
    ]
    for role, other in (("mentor", "mentee"), ("mentee", "mentor")):
        mine = [i for i in run if i.event.data.role == role]
        switching = await repo.enrolled(conn, other, [_person(i) for i in mine])
        for incoming in (i for i in mine if _person(i) in switching):  # rare: a change of role
            event, e = incoming.event, incoming.event.data
            with bind_event(event):
                await repo.delete_enrolment(conn, other, event.tenantid, e.program_id, e.person_id)
                await _end_relations(conn, work, event, e.program_id, e.person_id)
        stored = await repo.upsert_enrolments(
            conn, role, [(i.event.tenantid, i.event.data) for i in mine]
        )
        for incoming in (i for i in mine if _person(i) in stored):
            event, e = incoming.event, incoming.event.data
            mentee = e.person_id if role == "mentee" else None
            work.wants(event.tenantid, e.program_id, event, mentee=mentee)


async def on_enrolment_ended(conn: asyncpg.Connection, work: Work, incoming: Incoming) -> None:
    event, e = incoming.event, incoming.event.data
    await conn.execute(
        """INSERT INTO departures (tenant_id, program_id, person_id, ended_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id, program_id, person_id)
           DO UPDATE SET ended_at = GREATEST(departures.ended_at, EXCLUDED.ended_at)""",
        event.tenantid,
        e.program_id,
        e.person_id,
        event.time,
    )
    await _end_relations(conn, work, event, e.program_id, e.person_id)
    for role in ("mentor", "mentee"):
        await repo.delete_enrolment(conn, role, event.tenantid, e.program_id, e.person_id)


async def _end_relations(
    conn: asyncpg.Connection, work: Work, cause: CloudEvent, program_id: str, person_id: str
) -> None:
    for match in await repo.open_matches_of(conn, cause.tenantid, program_id, person_id):
        await repo.close(conn, match, "cancelled", work.now)
        _publish_ended(work, match, "cancelled", cause, ended_by=person_id)
        work.wants(cause.tenantid, program_id, cause)


async def on_match_responded(conn: asyncpg.Connection, work: Work, incoming: Incoming) -> None:
    event, answer = incoming.event, incoming.event.data
    match = await repo.get_match(conn, answer.match_id)
    if match is None or match["tenant_id"] != event.tenantid:
        return _reject(
            work, incoming, "unknown_match", f"no match {answer.match_id!r} in this tenant"
        )
    side = {match["mentee_id"]: "mentee", match["mentor_id"]: "mentor"}.get(answer.person_id)
    if side is None:
        return _reject(
            work, incoming, "not_a_party", f"{answer.person_id!r} is not part of this match"
        )
    if match["status"] != "proposed":
        if match["status"] == "confirmed" and answer.decision == "accepted":
            return None  # a repeated acceptance changes nothing
        return _reject(work, incoming, "match_closed", f"the proposal is already {match['status']}")
    if answer.decision == "declined":
        await repo.close(conn, match, "declined", work.now)
        _publish_ended(work, match, "declined", event, ended_by=answer.person_id)
        work.wants(match["tenant_id"], match["program_id"], event)
        return None
    match = await repo.record_acceptance(conn, match["match_id"], side, event.time)
    if match["mentee_accepted_at"] and match["mentor_accepted_at"]:
        await repo.confirm(conn, match, work.now)
        work.metrics.confirmed.inc()
        confirmed = MatchConfirmed(
            match_id=match["match_id"],
            program_id=match["program_id"],
            mentee_id=match["mentee_id"],
            mentor_id=match["mentor_id"],
            confirmed_at=work.now,
        )
        work.publish(
            "match-confirmed", match["match_id"], _event("match-confirmed", match, confirmed, event)
        )
    return None


async def on_session_completed(conn: asyncpg.Connection, work: Work, incoming: Incoming) -> None:
    event, session = incoming.event, incoming.event.data
    match = await repo.get_match(conn, session.match_id)
    if match is None or match["tenant_id"] != event.tenantid:
        return _reject(
            work, incoming, "unknown_match", f"no match {session.match_id!r} in this tenant"
        )
    if match["status"] != "confirmed":
        return _reject(work, incoming, "match_not_confirmed", f"the match is {match['status']}")
    await repo.record_session(
        conn, match, session.duration_minutes, session.mentor_rating, session.mentee_rating
    )
    return None


async def on_program_configured(conn: asyncpg.Connection, work: Work, incoming: Incoming) -> None:
    event, configured = incoming.event, incoming.event.data
    await repo.save_config(
        conn, event.tenantid, configured.program_id, configured.model_dump(mode="json"), event.time
    )
    work.wants(event.tenantid, configured.program_id, event)


async def on_cohort_requested(conn: asyncpg.Connection, work: Work, incoming: Incoming) -> None:
    event, request = incoming.event, incoming.event.data
    config = await repo.load_config(conn, event.tenantid, request.program_id)
    mentees = await repo.waiting_mentees(conn, event.tenantid, request.program_id, limit=1_000_000)
    if not mentees:
        return
    pool = await work.pools.get(conn, event.tenantid, request.program_id, work.now)
    excluded = await repo.past_pairs(
        conn, event.tenantid, request.program_id, [m.person_id for m in mentees]
    )
    from services.matching.domain.cohort import assign  # OR-Tools loads only when a cohort runs

    pairs = assign(pool, mentees, config, excluded)
    await _propose(conn, work, event, request.program_id, config, pairs)
    log.info("cohort matched", waiting=len(mentees), proposed=len(pairs))


async def rematch(conn: asyncpg.Connection, work: Work) -> None:
    """Continuous mode: each waiting mentee gets the best eligible mentor with a free slot."""
    for (tenant_id, program_id), only in sorted(work.rematch.items(), key=lambda kv: kv[0]):
        config = await repo.load_config(conn, tenant_id, program_id)
        if config.mode != "continuous":
            continue
        mentees = await repo.waiting_mentees(
            conn, tenant_id, program_id, only=sorted(only) if only else None
        )
        if not mentees:
            continue
        pool = await work.pools.get(conn, tenant_id, program_id, work.now)
        excluded = await repo.past_pairs(
            conn, tenant_id, program_id, [m.person_id for m in mentees]
        )
        pairs: list[tuple[Mentee, Candidate]] = []
        for mentee in mentees:
            best = rank(pool, mentee, config, excluded.get(mentee.person_id, ()), limit=1)
            if best:
                pool.take_slot(best[0].mentor.person_id)
                pairs.append((mentee, best[0]))
        await _propose(conn, work, work.cause[(tenant_id, program_id)], program_id, config, pairs)


async def _propose(
    conn: asyncpg.Connection,
    work: Work,
    cause: CloudEvent,
    program_id: str,
    config: ProgramConfig,
    pairs: list[tuple[Mentee, Candidate]],
) -> None:
    expires_at = work.now + timedelta(hours=config.response_deadline_hours)
    proposals = []
    for mentee, candidate in pairs:
        score, items = explain(candidate, mentee, config, work.now)
        if mentee.waiting_since is not None:
            work.metrics.time_to_match.observe((work.now - mentee.waiting_since).total_seconds())
        proposal = repo.NewProposal(
            match_id=str(uuid.uuid4()),
            tenant_id=cause.tenantid,
            program_id=program_id,
            mentee_id=mentee.person_id,
            mentor_id=candidate.mentor.person_id,
            score=score,
            explanation=repo.explanation_json(items),
            expires_at=expires_at,
        )
        proposals.append(proposal)
        proposed = MatchProposed(
            match_id=proposal.match_id,
            program_id=program_id,
            mentee_id=proposal.mentee_id,
            mentor_id=proposal.mentor_id,
            score=score,
            explanation=items,
            expires_at=expires_at,
        )
        work.publish(
            "match-proposed",
            proposal.match_id,
            CloudEvent.new("match-proposed", SOURCE, cause.tenantid, proposed, cause=cause),
        )
    await repo.insert_proposals(conn, proposals)
    work.metrics.proposals.labels(config.mode).inc(len(proposals))


async def expire_proposals(runtime: Runtime, pools: PoolCache, metrics: MatchingMetrics) -> None:
    """The expiry job: every replica runs it; program locks make each expiry happen once."""
    try:
        async with transaction(runtime.pool) as conn:
            await enqueue(conn, SERVICE, await expire_due(conn, pools, metrics))
    except Exception:
        pools.forget_all()  # what this replica believed may never have been committed
        raise


async def expire_due(
    conn: asyncpg.Connection,
    pools: PoolCache,
    metrics: MatchingMetrics,
    now: datetime | None = None,
) -> list[OutboxRecord]:
    """Expire unanswered proposals past their deadline, then rematch their programs."""
    work = Work(now=now or datetime.now(UTC), pools=pools, metrics=metrics)
    programs = await repo.due_programs(conn, work.now)
    await repo.lock_programs(conn, programs)
    for tenant_id, program_id in programs:
        for match in await repo.due_proposals(
            conn, tenant_id, program_id, work.now
        ):  # re-read under lock
            await repo.close(conn, match, "expired", work.now)
            cause = CloudEvent.new("match-ended", SOURCE, tenant_id, _ended(match, "expired"))
            _publish_ended(work, match, "expired", cause)
            work.wants(tenant_id, program_id, cause)
    await rematch(conn, work)
    return work.out


def _ended(match: asyncpg.Record, outcome: str, ended_by: str | None = None) -> MatchEnded:
    return MatchEnded(
        match_id=match["match_id"],
        program_id=match["program_id"],
        mentee_id=match["mentee_id"],
        mentor_id=match["mentor_id"],
        outcome=outcome,
        ended_by=ended_by,
    )


def _publish_ended(
    work: Work, match: asyncpg.Record, outcome: str, cause: CloudEvent, ended_by: str | None = None
) -> None:
    event = _event("match-ended", match, _ended(match, outcome, ended_by), cause)
    work.publish("match-ended", match["match_id"], event)
    work.metrics.ended.labels(outcome).inc()


def _event(type_: str, match: asyncpg.Record, data: object, cause: CloudEvent) -> CloudEvent:
    return CloudEvent.new(type_, SOURCE, match["tenant_id"], data, cause=cause)  # type: ignore[arg-type]


def _reject(work: Work, incoming: Incoming, code: str, reason: str) -> None:
    work.out.append(dead_letter(incoming.record, SERVICE, code, reason))
    log.info("event refused", code=code)


_HANDLERS = {  # enrolment-updated runs through on_enrolments_updated, several at a time
    "enrolment-ended": on_enrolment_ended,
    "match-responded": on_match_responded,
    "session-completed": on_session_completed,
    "program-configured": on_program_configured,
    "cohort-match-requested": on_cohort_requested,
}
