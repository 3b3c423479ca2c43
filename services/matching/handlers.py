"""Use cases of matching, each inside the batch transaction and under the program's lock.

A batch first locks every program it touches, then applies events in order, noting which
programs need (re)matching; then each such program in continuous mode proposes to its waiting
mentees. Problems with a valid event (an unknown match, a person who is not part of it) are
answered in the dead-letter topic, in the same transaction, which also forgets the event in the
inbox: once its cause is fixed, a replay from the dead-letter topic is applied.

Each use case is given the `Replica` (what the process keeps across transactions) and the
transaction's `UnitOfWork` (what it decided: records to publish, programs to rematch and why).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg

from services.matching import repository as repo
from services.matching.cpus import usable_cpus
from services.matching.domain.config import ProgramConfig
from services.matching.domain.explain import explain
from services.matching.domain.learning import learn
from services.matching.domain.match import Match, MatchStatus, Side
from services.matching.domain.relationship import (
    DAY,
    EndedBy,
    EndReason,
    Relationship,
    due,
    ending,
)
from services.matching.domain.scoring import Candidate, Mentee, MentorPool, best_or_reason
from services.matching.flows import FlowProcess
from services.matching.metrics import MatchingMetrics
from services.matching.pools import PoolCache
from shared.contract.envelope import CloudEvent
from shared.contract.events import (
    FeedbackRequested,
    MatchConfirmed,
    MatchEnded,
    MatchProposed,
    MenteeWaiting,
    RelationshipStalled,
    WaitingReason,
    WeightsLearned,
)
from shared.runtime import heap
from shared.runtime.db import inbox
from shared.runtime.db.outbox import OutboxRecord, enqueue
from shared.runtime.db.pool import transaction
from shared.runtime.dead_letters import dead_letter
from shared.runtime.logging import get_logger
from shared.runtime.pipeline import Incoming, bind_event
from shared.runtime.service import Runtime

log = get_logger(__name__)
SERVICE = "matching"
SOURCE = "mentornet/matching"
MATCH_EVENTS = frozenset(
    {"match-responded", "session-completed", "relationship-ended", "feedback-given"}
)
_IDS = uuid.UUID("3f1c9a7e-2b8d-4c61-a0f5-6d61746368ed")  # namespace of derived event ids
COHORT_MAX = 1_000_000  # waiting mentees one cohort request assigns, at most

PAUSED_UNTIL_AVAILABLE = datetime.max.replace(tzinfo=UTC)  # 'infinity' in the database

Program = tuple[str, str]  # (tenant_id, program_id)
Pairs = list[tuple[Mentee, Candidate]]


@dataclass(frozen=True)
class Replica:
    """What this process keeps across transactions: its cached pools, its metrics, and the
    child process solving cohorts' flows."""

    pools: PoolCache
    metrics: MatchingMetrics
    flows: FlowProcess


@dataclass
class UnitOfWork:
    """What one transaction does: records to publish and programs to rematch, with their cause."""

    now: datetime
    out: list[OutboxRecord] = field(default_factory=list)
    # program -> mentees to try (None: the whole waitlist, because capacity was freed or added)
    rematch: dict[Program, set[str] | None] = field(default_factory=dict)
    cause: dict[Program, CloudEvent | None] = field(default_factory=dict)  # None: a timer
    refused: list[CloudEvent] = field(default_factory=list)  # answered with a dead letter

    def wants(
        self,
        tenant_id: str,
        program_id: str,
        cause: CloudEvent | None,
        mentee: str | None = None,
    ) -> None:
        key = (tenant_id, program_id)
        self.cause.setdefault(key, cause)
        if mentee is None:
            self.rematch[key] = None
        elif key not in self.rematch or self.rematch[key] is not None:
            self.rematch.setdefault(key, set()).add(mentee)  # type: ignore[union-attr]

    def publish(self, topic: str, key: str, event: CloudEvent) -> None:
        self.out.append(OutboxRecord.of_event(topic, key, event))

    def reject(self, incoming: Incoming, code: str, reason: str) -> None:
        """Answer a valid event that cannot be applied in the dead-letter topic (and forget it
        in the inbox, so that a replay is not taken for a duplicate)."""
        self.out.append(dead_letter(incoming.record, SERVICE, code, reason))
        self.refused.append(incoming.event)
        log.info("event refused", code=code)


Handler = Callable[[asyncpg.Connection, Replica, UnitOfWork, Incoming], Awaitable[None]]


async def apply_events(
    conn: asyncpg.Connection, batch: list[Incoming], replica: Replica
) -> list[OutboxRecord]:
    work = UnitOfWork(now=datetime.now(UTC))
    matches = await repo.matches_by_id(
        conn, [i.event.data.match_id for i in batch if i.event.type in MATCH_EVENTS]
    )
    programs = [
        (i.event.tenantid, i.event.data.program_id)
        for i in batch
        if hasattr(i.event.data, "program_id")
    ]
    programs += [(m.tenant_id, m.program_id) for m in matches.values()]
    await repo.lock_programs(conn, programs)
    for run in _runs(batch):
        if run[0].event.type == "enrolment-updated":
            await on_enrolments_updated(conn, replica, work, run)
            continue
        (incoming,) = run
        with bind_event(incoming.event):
            await _HANDLERS[incoming.event.type](conn, replica, work, incoming)
    for event in work.refused:
        await inbox.forget(conn, event)
    await rematch(conn, replica, work)
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
        person = _person(incoming)
        if not runs or runs[-1][0].event.type != "enrolment-updated" or person in people:
            runs.append([])
            people = set()
        runs[-1].append(incoming)
        people.add(person)
    return runs


def _person(incoming: Incoming) -> repo.Person:
    return (incoming.event.tenantid, incoming.event.data.program_id, incoming.event.data.person_id)


async def on_enrolments_updated(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, run: list[Incoming]
) -> None:
    """Enrolment updates of distinct people: store each one newer than what is known, unless the
    person left the program after it was registered."""
    known = await repo.standing(conn, [_person(i) for i in run])

    def current(i: Incoming) -> bool:  # an update older than a departure read after it: ignored
        left_at = known[_person(i)].left_at
        return left_at is None or i.event.data.registered_at > left_at

    run = [i for i in run if current(i)]
    for role, other in (("mentor", "mentee"), ("mentee", "mentor")):
        mine = [i for i in run if i.event.data.role == role]
        switching = [i for i in mine if other in known[_person(i)].roles]
        for incoming in switching:  # rare: a change of role
            with bind_event(incoming.event):
                await repo.delete_enrolment(conn, other, _person(incoming))
                await _end_relations(conn, replica, work, incoming.event, _person(incoming))
        stored = await repo.upsert_enrolments(
            conn, role, [(i.event.tenantid, i.event.data) for i in mine]
        )
        for incoming in (i for i in mine if _person(i) in stored):
            event, e = incoming.event, incoming.event.data
            mentee = e.person_id if role == "mentee" else None
            work.wants(event.tenantid, e.program_id, event, mentee=mentee)


async def on_enrolment_ended(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    person = _person(incoming)
    await repo.record_departure(conn, person, incoming.event.time)
    await _end_relations(conn, replica, work, incoming.event, person)
    for role in ("mentor", "mentee"):
        await repo.delete_enrolment(conn, role, person)
    if incoming.event.data.erase:
        await repo.erase_free_text(conn, person)


async def _end_relations(
    conn: asyncpg.Connection,
    replica: Replica,
    work: UnitOfWork,
    cause: CloudEvent,
    person: repo.Person,
) -> None:
    tenant_id, program_id, person_id = person
    for match in await repo.open_matches_of(conn, person):
        await repo.close(conn, match, MatchStatus.CANCELLED, work.now)
        _publish_ended(replica, work, match, MatchStatus.CANCELLED, cause, ended_by=person_id)
        work.wants(tenant_id, program_id, cause)


async def on_match_responded(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    event, answer = incoming.event, incoming.event.data
    match = await _match_of(conn, work, incoming)
    if match is None:
        return None
    side = _side_of(work, incoming, match)
    if side is None:
        return None
    if match.status is not MatchStatus.PROPOSED:
        if match.status is MatchStatus.CONFIRMED and answer.decision == "accepted":
            return None  # a repeated acceptance changes nothing
        if match.status is MatchStatus.CONFIRMED:
            return work.reject(
                incoming,
                "match_closed",
                "the proposal is already confirmed: end the relationship with relationship-ended",
            )
        return work.reject(incoming, "match_closed", f"the proposal is already {match.status}")
    if answer.decision == "declined":
        await repo.close(conn, match, MatchStatus.DECLINED, work.now)
        _publish_ended(replica, work, match, MatchStatus.DECLINED, event, ended_by=answer.person_id)
        work.wants(match.tenant_id, match.program_id, event)
        return None
    match = await repo.record_acceptance(conn, match, side, event.time)
    if match.accepted_by_both:
        await repo.confirm(conn, match, work.now)
        replica.metrics.confirmed.inc()
        confirmed = MatchConfirmed(
            match_id=match.match_id,
            program_id=match.program_id,
            mentee_id=match.mentee_id,
            mentor_id=match.mentor_id,
            confirmed_at=work.now,
        )
        work.publish(
            "match-confirmed", match.match_id, _event("match-confirmed", match, confirmed, event)
        )
    return None


async def on_session_completed(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    event, session = incoming.event, incoming.event.data
    match = await _match_of(conn, work, incoming)
    if match is None:
        return None
    if await repo.session_recorded(conn, match, session.session_id):
        replica.metrics.repeated_sessions.inc()  # reported again: counted once, whatever its id
        return None
    if not match.was_confirmed:  # a session reported late, after the end, still counts
        return work.reject(incoming, "match_not_confirmed", f"the match is {match.status}")
    await repo.record_session(
        conn,
        match,
        session.session_id,
        session.duration_minutes,
        session.mentor_rating,
        session.mentee_rating,
        held_at=min(event.time, work.now),  # a clock ahead must not postpone a stall
    )
    return None


async def on_relationship_ended(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    """A mentor, a mentee or the program ends a relationship: the mentor's place is free at once,
    both are asked for closing feedback, and the mentee is matched again or is done."""
    event, end = incoming.event, incoming.event.data
    match = await _match_of(conn, work, incoming)
    if match is None:
        return None
    if end.ended_by != "program" and match.side_of(end.person_id) != end.ended_by:
        return work.reject(
            incoming, "not_a_party", f"{end.person_id!r} is not the {end.ended_by} of this match"
        )
    if match.status is not MatchStatus.CONFIRMED:
        if match.status is MatchStatus.PROPOSED:
            return work.reject(
                incoming, "match_not_confirmed", "a proposal is declined with match-responded"
            )
        return work.reject(incoming, "match_closed", f"the relationship is already {match.status}")
    effect = ending(end.ended_by, end.reason)
    if effect.mentor_paused:
        mentor = (match.tenant_id, match.program_id, match.mentor_id)
        await repo.record_availability(conn, mentor, PAUSED_UNTIL_AVAILABLE, event.time)
    ended_by = end.person_id if end.ended_by != "program" else None
    await repo.record_ending(conn, match, ended_by, end.ended_by, end.reason, end.note)
    await _close_relationship(
        conn,
        replica,
        work,
        match,
        MatchStatus(effect.outcome),
        event,
        "first_in_line" if effect.mentee_waits_again else "done",
        ended_by=ended_by,
        role=end.ended_by,
        reason=end.reason,
    )
    return None


async def on_feedback_given(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    """Check-in or closing feedback from one side: stored for the program, and the mentee's
    rating counts in the mentor's reputation (as a session's rating does)."""
    event, feedback = incoming.event, incoming.event.data
    match = await _match_of(conn, work, incoming)
    if match is None:
        return None
    side = _side_of(work, incoming, match)
    if side is None:
        return None
    if not match.was_confirmed:
        return work.reject(incoming, "match_not_confirmed", f"the match is {match.status}")
    if feedback.goals is not None and side != "mentee":
        return work.reject(incoming, "not_the_mentee", "only the mentee reports on goals")
    await repo.record_feedback(conn, match, side, feedback, min(event.time, work.now))
    if side == "mentee":
        await repo.rate_mentor(conn, match, feedback.rating)
    return None


async def on_mentor_availability(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    """A mentor pauses (no new proposal until `until`, or until they are available again) or
    comes back (the waitlist is served). Said before their registration arrives, it still holds."""
    event, said = incoming.event, incoming.event.data
    paused_until = None if said.available else (said.until or PAUSED_UNTIL_AVAILABLE)
    if paused_until is not None and paused_until <= work.now:
        paused_until = None  # a pause already over
    stored = await repo.record_availability(conn, _person(incoming), paused_until, event.time)
    if stored and paused_until is None:
        work.wants(event.tenantid, said.program_id, event)
    return None


def _side_of(work: UnitOfWork, incoming: Incoming, match: Match) -> Side | None:
    """The side of the match the event's `person_id` is on, or None once it is refused."""
    person = incoming.event.data.person_id
    side = match.side_of(person)
    if side is None:
        work.reject(incoming, "not_a_party", f"{person!r} is not part of this match")
    return side


async def _match_of(conn: asyncpg.Connection, work: UnitOfWork, incoming: Incoming) -> Match | None:
    """The match an app event names, or None once it is refused as unknown."""
    event = incoming.event
    match = await repo.get_match(conn, event.data.match_id)
    if match is None or match.tenant_id != event.tenantid:
        work.reject(incoming, "unknown_match", f"no match {event.data.match_id!r} in this tenant")
        return None
    return match


async def on_program_configured(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    event, configured = incoming.event, incoming.event.data
    await repo.save_config(
        conn, event.tenantid, configured.program_id, configured.model_dump(mode="json"), event.time
    )
    await repo.reconsider_relationships(conn, event.tenantid, configured.program_id, work.now)
    work.wants(event.tenantid, configured.program_id, event)


async def on_cohort_requested(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, incoming: Incoming
) -> None:
    event, request = incoming.event, incoming.event.data
    with heap.long_lived():  # a full garbage collection would stall every thread (see heap)
        await _match_cohort(conn, replica, work, event, request.program_id)


async def _match_cohort(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, event: CloudEvent, program_id: str
) -> None:
    tenant_id = event.tenantid
    config = await repo.load_config(conn, tenant_id, program_id)
    mentees = await repo.waiting_mentees(conn, tenant_id, program_id, limit=COHORT_MAX)
    if not mentees:
        return
    excluded = {m.person_id: set(m.past_mentors) for m in mentees if m.past_mentors}
    # The solve takes seconds for a big cohort: it runs in a worker thread (numpy releases the
    # GIL) and its flows in a child process (OR-Tools does not: see flows.py), so the event loop
    # keeps answering probes and sending Kafka heartbeats while this transaction and the program
    # lock stay held. The thread alone touches the pool: the program lock keeps every other
    # transaction (the expiry job's rematch too) off this program, and the pool is borrowed, out
    # of the cache, so no task of the loop can be handed it even if this one is cancelled while
    # the thread runs on (a pool returns to the cache only when the block ends well).
    async with replica.pools.borrow(conn, tenant_id, program_id, work.now) as pool:
        cohort = Cohort(pool, mentees, config, excluded)
        heap.keep()  # the mentees and the pool live until the proposals are written
        proposals = await asyncio.to_thread(
            _solve_cohort, cohort, replica.flows, event, program_id, work.now
        )
        await _propose(conn, replica, work, proposals, config.mode)
    log.info("cohort matched", waiting=len(mentees), proposed=len(proposals.rows))


@dataclass(frozen=True)
class Cohort:
    """What a cohort request assigns: a program's pool and waiting mentees, under its config."""

    pool: MentorPool
    mentees: Sequence[Mentee]
    config: ProgramConfig
    excluded: Mapping[str, set[str]]  # mentee -> mentors never proposed to them again


def _solve_cohort(
    cohort: Cohort, flows: FlowProcess, cause: CloudEvent, program_id: str, now: datetime
) -> Proposals:
    """The cohort's assignment and its proposals: computation only, for a worker thread."""
    from services.matching.domain.cohort import assign  # OR-Tools loads only when a cohort runs

    pairs = assign(
        cohort.pool,
        cohort.mentees,
        cohort.config,
        cohort.excluded,
        workers=usable_cpus(),
        flow=flows,
    )
    return _proposals(cause.tenantid, cause, program_id, cohort.config, pairs, now)


async def rematch(conn: asyncpg.Connection, replica: Replica, work: UnitOfWork) -> None:
    """Continuous mode: each waiting mentee gets the best eligible mentor with a free slot."""
    for (tenant_id, program_id), only in sorted(work.rematch.items(), key=lambda kv: kv[0]):
        config, version = await repo.load_program(conn, tenant_id, program_id)
        if config.mode != "continuous":
            continue
        mentees = await repo.waiting_mentees(
            conn, tenant_id, program_id, only=sorted(only) if only else None
        )
        if not mentees:
            continue
        pool = await replica.pools.get(conn, tenant_id, program_id, work.now, version)
        pairs: Pairs = []
        reasons: list[tuple[Mentee, WaitingReason]] = []
        for mentee in mentees:
            best = best_or_reason(pool, mentee, config, mentee.past_mentors)
            if isinstance(best, Candidate):
                pool.take_slot(best.mentor.person_id)
                pairs.append((mentee, best))
            elif best != mentee.waiting_reason:
                reasons.append((mentee, best))
        cause = work.cause[(tenant_id, program_id)]
        await _still_waiting(conn, work, tenant_id, program_id, reasons, cause)
        await _propose(
            conn,
            replica,
            work,
            _proposals(tenant_id, cause, program_id, config, pairs, work.now),
            config.mode,
        )


async def _still_waiting(
    conn: asyncpg.Connection,
    work: UnitOfWork,
    tenant_id: str,
    program_id: str,
    reasons: list[tuple[Mentee, WaitingReason]],
    cause: CloudEvent | None,
) -> None:
    """Mentees who got no proposal, and why, where the reason changed since the last try:
    stored (program show reads it) and announced (`mentee-waiting`, for the report)."""
    if not reasons:
        return
    await repo.record_waiting_reasons(
        conn, tenant_id, program_id, [(m.person_id, reason) for m, reason in reasons]
    )
    for mentee, reason in reasons:
        waiting = MenteeWaiting(
            program_id=program_id,
            mentee_id=mentee.person_id,
            reason=reason,
            waiting_since=mentee.waiting_since,
        )
        event = CloudEvent.new("mentee-waiting", SOURCE, tenant_id, waiting, cause=cause)
        work.publish("mentee-waiting", f"{tenant_id}:{program_id}", event)


@dataclass(frozen=True)
class Proposals:
    """Proposals ready to be stored, the events announcing them, and how long each mentee waited."""

    rows: list[repo.NewProposal]
    events: list[OutboxRecord]
    waited_seconds: list[float]


def _proposals(
    tenant_id: str,
    cause: CloudEvent | None,
    program_id: str,
    config: ProgramConfig,
    pairs: Pairs,
    now: datetime,
) -> Proposals:
    """Each pair's proposal, explained, and its `match-proposed` event (computation only)."""
    expires_at = now + timedelta(hours=config.response_deadline_hours)
    made = Proposals([], [], [])
    for (mentee, candidate), match_id in zip(pairs, _random_ids(len(pairs)), strict=True):
        score, items = explain(candidate, mentee, config, now)
        if mentee.waiting_since is not None:
            made.waited_seconds.append((now - mentee.waiting_since).total_seconds())
        proposal = repo.NewProposal(
            match_id=match_id,
            tenant_id=tenant_id,
            program_id=program_id,
            mentee_id=mentee.person_id,
            mentor_id=candidate.mentor.person_id,
            score=score,
            explanation=repo.explanation_json(items),
            expires_at=expires_at,
            criteria=json.dumps({c: round(v, 6) for c, v in candidate.values.items()}),
        )
        made.rows.append(proposal)
        proposed = MatchProposed(
            match_id=proposal.match_id,
            program_id=program_id,
            mentee_id=proposal.mentee_id,
            mentor_id=proposal.mentor_id,
            score=score,
            explanation=items,
            expires_at=expires_at,
        )
        event = CloudEvent.new(
            "match-proposed",
            SOURCE,
            tenant_id,
            proposed,
            cause=cause,
            id=str(uuid.uuid5(_IDS, f"{tenant_id}|{match_id}|match-proposed")),
        )
        made.events.append(OutboxRecord.of_event("match-proposed", proposal.match_id, event))
    return made


def _random_ids(count: int) -> Iterator[str]:
    """`count` random (version 4) UUIDs, from one read of the system's random source.

    A cohort's solve makes thousands of proposals in a worker thread: uuid4 reads the random
    source once per id, and each read releases the GIL, which the same thread takes back before
    the event loop's thread wakes up to it. Measured: the event loop then stalls for hundreds
    of milliseconds at a time (a /healthz answer later than a second on a slower machine)."""
    entropy = os.urandom(16 * count)
    return (str(uuid.UUID(bytes=entropy[i : i + 16], version=4)) for i in range(0, 16 * count, 16))


async def _propose(
    conn: asyncpg.Connection, replica: Replica, work: UnitOfWork, proposals: Proposals, mode: str
) -> None:
    """Store the proposals (raises repo.StalePool when a mentor has no place left after all).

    The pool they were chosen from already took their places: it stays this replica's current
    copy at the version the proposals moved the program to, while other replicas reload."""
    try:
        version = await repo.insert_proposals(conn, proposals.rows)
    except repo.StalePool:
        replica.metrics.stale_pools.inc()
        raise
    if version is not None:
        first = proposals.rows[0]
        replica.pools.proposed(first.tenant_id, first.program_id, version)
    work.out += proposals.events
    for seconds in proposals.waited_seconds:
        replica.metrics.time_to_match.observe(seconds)
    replica.metrics.proposals.labels(mode).inc(len(proposals.rows))


async def expire_proposals(runtime: Runtime, replica: Replica) -> None:
    """The expiry job: every replica runs it; program locks make each expiry happen once."""
    try:
        async with transaction(runtime.pool) as conn:
            await enqueue(conn, SERVICE, await expire_due(conn, replica))
    except BaseException:
        replica.pools.forget_all()  # what this replica believed may never have been committed
        raise


async def expire_due(
    conn: asyncpg.Connection, replica: Replica, now: datetime | None = None
) -> list[OutboxRecord]:
    """Expire unanswered proposals past their deadline, then rematch their programs."""
    work = UnitOfWork(now=now or datetime.now(UTC))
    programs = await repo.due_programs(conn, work.now)
    await repo.lock_programs(conn, programs)
    for tenant_id, program_id in programs:
        # read again under the lock: another replica may have expired them meanwhile
        for match in await repo.due_proposals(conn, tenant_id, program_id, work.now):
            await repo.close(conn, match, MatchStatus.EXPIRED, work.now)
            cause = CloudEvent.new(
                "match-ended", SOURCE, tenant_id, _ended(match, MatchStatus.EXPIRED)
            )
            _publish_ended(replica, work, match, MatchStatus.EXPIRED, cause)
            work.wants(tenant_id, program_id, cause)
    await rematch(conn, replica, work)
    return work.out


async def follow_relationships(runtime: Runtime, replica: Replica) -> None:
    """The relationship job: every replica runs it; program locks make each step happen once."""
    try:
        async with transaction(runtime.pool) as conn:
            await enqueue(conn, SERVICE, await follow_due(conn, replica))
    except BaseException:
        replica.pools.forget_all()
        raise


async def follow_due(
    conn: asyncpg.Connection, replica: Replica, now: datetime | None = None
) -> list[OutboxRecord]:
    """Ask the check-ins that fell due, report stalls, complete relationships that reached their
    length, and end the pauses that are over; then serve the waitlists of the places freed.

    Each step is written in the same transaction as the events announcing it, under the
    program's lock, and read again under that lock: with several replicas, and across restarts,
    each happens once and none is missed (a step not committed is due again at the next run)."""
    work = UnitOfWork(now=now or datetime.now(UTC))
    programs = await repo.due_relationship_programs(conn, work.now)
    await repo.lock_programs(conn, programs)
    for tenant_id, program_id in programs:
        config = await repo.load_config(conn, tenant_id, program_id)
        if await repo.resume_mentors(conn, tenant_id, program_id, work.now):
            work.wants(tenant_id, program_id, None)  # their pause is over: serve the waitlist
        for match, relationship in await repo.due_relationships(
            conn, tenant_id, program_id, work.now
        ):
            await _follow(conn, replica, work, match, relationship, config)
    await rematch(conn, replica, work)
    return work.out


async def _follow(
    conn: asyncpg.Connection,
    replica: Replica,
    work: UnitOfWork,
    match: Match,
    relationship: Relationship,
    config: ProgramConfig,
) -> None:
    step = due(relationship, config, work.now)
    if step.complete:
        await _close_relationship(conn, replica, work, match, MatchStatus.COMPLETED, None, "done")
        return
    for number in step.checkins:
        _ask_feedback(work, match, "checkin", None, number)
    stalled_at = relationship.stalled_at
    if step.stalled_days is not None:
        stalled_at = work.now
        stalled = RelationshipStalled(
            match_id=match.match_id,
            program_id=match.program_id,
            mentee_id=match.mentee_id,
            mentor_id=match.mentor_id,
            days_since_last_session=step.stalled_days,
        )
        event = _derived(
            "relationship-stalled", match, stalled, f"stalled:{relationship.last_activity}"
        )
        work.publish("relationship-stalled", match.match_id, event)
        replica.metrics.stalled.inc()
    await repo.record_follow_up(
        conn, match, relationship.checkins_done + len(step.checkins), stalled_at, step.next_at
    )


async def learn_weights(runtime: Runtime, replica: Replica) -> None:
    """The learning job: every replica runs it. Each program learns in a transaction of its own,
    so a fit holds up no other program's matching."""
    async with runtime.pool.acquire() as conn:
        programs = await repo.learning_due(conn)
    for program in programs:
        async with transaction(runtime.pool) as conn:
            await enqueue(conn, SERVICE, await learn_due(conn, replica, program))


async def learn_due(
    conn: asyncpg.Connection, replica: Replica, program: Program, now: datetime | None = None
) -> list[OutboxRecord]:
    """Learn a program's weights from its outcomes (`learning.learn`), keep them and announce
    them (`weights-learned`); proposals read them with the configuration from then on.

    Under the program's lock, and only if still due once it is held: another replica may have
    just learned them. The event's id derives from the program and the run's number, so a run
    retried after a rollback is announced under the same id."""
    now = now or datetime.now(UTC)
    await repo.lock_programs(conn, [program])
    if not await repo.learning_due(conn, [program]):
        return []
    tenant_id, program_id = program
    config = await repo.load_config(conn, tenant_id, program_id)
    run = await repo.read_outcomes(conn, tenant_id, program_id)
    # in a worker thread, as a cohort's solve: the event loop keeps serving meanwhile
    learned = await asyncio.to_thread(learn, run.outcomes, config)
    await repo.record_learning(conn, tenant_id, program_id, run, learned, now)
    if learned is None:
        return []
    replica.metrics.weights_learned.labels(str(learned.in_force).lower()).inc()
    taught = WeightsLearned(
        program_id=program_id,
        weights=learned.weights,
        configured=dict(config.weights),
        learned=learned.learned,
        outcomes=learned.outcomes,
        in_force=learned.in_force,
    )
    event_id = str(uuid.uuid5(_IDS, f"{tenant_id}|{program_id}|weights-learned|{run.number}"))
    event = CloudEvent.new("weights-learned", SOURCE, tenant_id, taught, id=event_id)
    log.info("weights learned", program_id=program_id, outcomes=learned.outcomes)
    return [OutboxRecord.of_event("weights-learned", f"{tenant_id}:{program_id}", event)]


async def _close_relationship(
    conn: asyncpg.Connection,
    replica: Replica,
    work: UnitOfWork,
    match: Match,
    outcome: MatchStatus,
    cause: CloudEvent | None,
    mentee: repo.MenteeAfter,
    *,
    ended_by: str | None = None,
    role: EndedBy | None = None,
    reason: EndReason | None = None,
) -> None:
    """End a running relationship: free the mentor's place (the waitlist is served), tell
    everyone (`match-ended`), and ask both people for closing feedback. A relationship ends
    once, so the events' ids derive from the match."""
    await repo.close(conn, match, outcome, work.now, mentee=mentee)
    days = None if match.confirmed_at is None else (work.now - match.confirmed_at) / DAY
    ended = _ended(
        match, outcome, ended_by, role=role, reason=reason, days=days, rematched=mentee != "done"
    )
    event = _derived("match-ended", match, ended, "ended", cause=cause)
    work.publish("match-ended", match.match_id, event)
    replica.metrics.ended.labels(outcome.value).inc()
    _ask_feedback(work, match, "closing", event, outcome=ended.outcome)
    work.wants(match.tenant_id, match.program_id, event)


def _ask_feedback(
    work: UnitOfWork,
    match: Match,
    kind: Literal["checkin", "closing"],
    cause: CloudEvent | None,
    checkin: int | None = None,
    outcome: str | None = None,
) -> None:
    """`feedback-requested` to both sides; ids derived from the match and the request."""
    sides: tuple[tuple[Side, str], ...] = (("mentee", match.mentee_id), ("mentor", match.mentor_id))
    for role, person in sides:
        asked = FeedbackRequested(
            match_id=match.match_id,
            program_id=match.program_id,
            mentee_id=match.mentee_id,
            mentor_id=match.mentor_id,
            person_id=person,
            role=role,
            kind=kind,
            checkin=checkin,
            outcome=outcome,
        )
        what = f"{kind}:{checkin or 0}:{role}"
        event = _derived("feedback-requested", match, asked, what, cause=cause)
        work.publish("feedback-requested", match.match_id, event)


def _derived(
    type_: str,
    match: Match,
    data: MatchEnded | RelationshipStalled | FeedbackRequested,
    what: str,
    cause: CloudEvent | None = None,
) -> CloudEvent:
    """An event the relationship's own course causes: its id derives from the match and the
    step, so the same step can never be announced under two ids."""
    event_id = str(uuid.uuid5(_IDS, f"{match.tenant_id}|{match.match_id}|{type_}|{what}"))
    return CloudEvent.new(type_, SOURCE, match.tenant_id, data, cause=cause, id=event_id)


def _ended(
    match: Match,
    outcome: MatchStatus,
    ended_by: str | None = None,
    *,
    role: EndedBy | None = None,
    reason: EndReason | None = None,
    days: float | None = None,
    rematched: bool | None = None,
) -> MatchEnded:
    return MatchEnded(
        match_id=match.match_id,
        program_id=match.program_id,
        mentee_id=match.mentee_id,
        mentor_id=match.mentor_id,
        outcome=outcome.value,
        ended_by=ended_by,
        ended_by_role=role,
        reason=reason,
        relationship_days=None if days is None else round(days, 6),
        mentee_rematched=rematched,
    )


def _publish_ended(
    replica: Replica,
    work: UnitOfWork,
    match: Match,
    outcome: MatchStatus,
    cause: CloudEvent,
    ended_by: str | None = None,
) -> None:
    event = _event("match-ended", match, _ended(match, outcome, ended_by), cause)
    work.publish("match-ended", match.match_id, event)
    replica.metrics.ended.labels(outcome.value).inc()


def _event(
    type_: str, match: Match, data: MatchConfirmed | MatchEnded, cause: CloudEvent
) -> CloudEvent:
    return CloudEvent.new(type_, SOURCE, match.tenant_id, data, cause=cause)


_HANDLERS: dict[str, Handler] = {  # enrolment-updated runs through on_enrolments_updated, in runs
    "enrolment-ended": on_enrolment_ended,
    "match-responded": on_match_responded,
    "session-completed": on_session_completed,
    "relationship-ended": on_relationship_ended,
    "feedback-given": on_feedback_given,
    "mentor-availability": on_mentor_availability,
    "program-configured": on_program_configured,
    "cohort-match-requested": on_cohort_requested,
}
