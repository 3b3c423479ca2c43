"""Use cases of notifications: apply a batch of valid, fresh events inside one transaction.

Nothing is sent here. Applying an event only writes rows (contacts, matches, answers and
`deliveries`), so a batch commits in milliseconds whatever the SMTP servers do, and a retry
never blocks the Kafka partition. The delivery worker sends the rows afterwards.

Events of different topics arrive in no particular order (a proposal may come before the
enrolments it names, an answer before its proposal). Each step is written to give the same
result in any order: latest-registration-wins contacts with erasure tombstones, match states
that only move forward, proposals or reminders planned only for matches still open,
feedback requests only for confirmed matches (a session read before its match's confirmation
is held until the confirmation comes, and dropped if the match ends unconfirmed), and check-ins
or stall nudges only for relationships not known to have ended. Check-ins, stalls and
relationship ends name both people and imply the confirmation, so they need no lookup and
count as the confirmation when they are read before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from services.notifications import domain, repository
from services.notifications.domain import Cause, NewDelivery, Planned, Policy, Session
from services.notifications.repository import ContactRow, MatchRow, SessionRow
from shared.contract.envelope import CloudEvent, Rejected
from shared.runtime.db.outbox import OutboxRecord
from shared.runtime.logging import get_logger
from shared.runtime.pipeline import Incoming

log = get_logger(__name__)

OPEN_ONLY = frozenset({"match-proposal", "match-reminder"})  # pointless once a match moved on
# the events that name a match's mentee and mentor (and so fill `matches`)
RELATIONSHIP_EVENTS = ("feedback-requested", "relationship-stalled")
MATCH_EVENTS = ("match-proposed", "match-confirmed", "match-ended", *RELATIONSHIP_EVENTS)


class Handlers:
    def __init__(self, policy: Policy, registry: CollectorRegistry) -> None:
        self.policy = policy
        self.ignored = Counter(
            "mentornet_notifications_ignored",
            "Ingress records notifications skipped on purpose",
            ["reason"],
            registry=registry,
        )

    async def apply(self, conn: asyncpg.Connection, batch: list[Incoming]) -> list[OutboxRecord]:
        """The EventPipeline's `apply`. Returns no records: outcomes are published by the
        worker when deliveries finish."""
        now = datetime.now(UTC)
        events = [i.event for i in batch]
        of = _by_type(events)

        await repository.upsert_contacts(conn, [_contact(e) for e in of["enrolment-updated"]])
        erasures = [
            (e.tenantid, e.data.person_id, e.time) for e in of["enrolment-ended"] if e.data.erase
        ]
        if erasures:
            cancelled = await repository.erase_contacts(conn, erasures)
            log.info("contacts erased", people=len(erasures), cancelled=cancelled)

        await repository.lock_matches(  # serialise sessions with their match's confirmation
            conn,
            [
                (e.tenantid, e.data.match_id)
                for t in (
                    "session-completed",
                    "match-confirmed",
                    "match-ended",
                    *RELATIONSHIP_EVENTS,
                )
                for e in of[t]
            ],
        )
        await repository.upsert_matches(conn, _match_rows(events))
        await repository.record_responses(
            conn,
            [
                (e.tenantid, e.data.match_id, e.data.person_id, e.data.decision)
                for e in of["match-responded"]
            ],
        )
        ended = [(e.tenantid, e.data.match_id) for e in of["match-ended"]]
        moved_on = ended + _confirmed(of)
        await repository.cancel_for_matches(conn, moved_on, sorted(OPEN_ONLY), "match moved on")
        await repository.cancel_for_matches(
            conn, ended, sorted(domain.DURING_RELATIONSHIP), "relationship ended"
        )

        rows = await self._plan(conn, of, now)
        inserted = await repository.insert_deliveries(conn, rows)
        if inserted:
            await repository.notify_worker(conn)
        log.debug("batch applied", events=len(events), deliveries=inserted)
        return []

    async def _plan(
        self, conn: asyncpg.Connection, of: dict[str, list[CloudEvent]], now: datetime
    ) -> list[NewDelivery]:
        keys = [
            (e.tenantid, e.data.match_id)
            for t in ("match-proposed", "session-completed", *RELATIONSHIP_EVENTS)
            for e in of[t]
        ]
        known = await repository.matches(conn, keys)
        answered = await repository.responded(
            conn, [(e.tenantid, e.data.match_id) for e in of["match-proposed"]]
        )
        planned: list[tuple[Cause, list[Planned]]] = []
        for e in of["match-proposed"]:
            match = known.get((e.tenantid, e.data.match_id))
            if match is not None and match.state != "proposed":
                self.ignored.labels("match_moved_on").inc()
                continue
            plan = domain.for_proposal(e.data, self.policy, now)
            plan = [
                p
                for p in plan
                if p.kind != "match-reminder"
                or (e.tenantid, e.data.match_id, p.recipient_id) not in answered
            ]
            planned.append((Cause.of(e), plan))
        planned += [(Cause.of(e), domain.for_confirmation(e.data)) for e in of["match-confirmed"]]
        planned += [(Cause.of(e), domain.for_ending(e.data)) for e in of["match-ended"]]
        planned += await self._sessions(conn, of, known)
        planned += self._relationships(of, known)

        if not planned:
            return []
        channels = await repository.channels(conn, [cause.tenant_id for cause, _ in planned])
        return [
            row
            for cause, plan in planned
            for row in domain.deliveries_for(
                cause, plan, channels[cause.tenant_id], self.policy, now
            )
        ]

    async def _sessions(
        self,
        conn: asyncpg.Connection,
        of: dict[str, list[CloudEvent]],
        known: Mapping[tuple[str, str], domain.KnownMatch],
    ) -> list[tuple[Cause, list[Planned]]]:
        """Feedback requests for sessions of confirmed matches, once per session: new sessions
        of confirmed matches, and the held ones this batch's confirmations release. The
        sessions of this batch's matches that ended unconfirmed are dropped."""
        fresh: list[SessionRow] = []
        for e in of["session-completed"]:
            match = known.get((e.tenantid, e.data.match_id))
            fate = domain.session_fate(match)
            if fate == "unknown_match":  # sessions follow a proposal: a foreign match id
                self.ignored.labels(fate).inc()
                log.warning("session of an unknown match", event_id=e.id)
                continue
            if fate == "not_confirmed":  # the match ended without a confirmation
                self.ignored.labels(fate).inc()
                log.warning("session of a match never confirmed", event_id=e.id)
                continue
            state = "planned" if fate == "feedback" else "pending"
            fresh.append(SessionRow(Cause.of(e), Session.of(e.data), state))
        stored = await repository.record_sessions(conn, fresh)
        if len(stored) < len(fresh):
            self.ignored.labels("duplicate_session").inc(len(fresh) - len(stored))
        held = sum(r.state == "pending" for r in stored)
        if held:
            log.info("sessions held until their match is confirmed", sessions=held)

        planned = [
            (row.cause, domain.for_session(row.session, known[row.match_key].parties))
            for row in stored
            if row.state == "planned"
        ]
        released = await repository.release_sessions(conn, _confirmed(of))
        planned += [(row.cause, domain.for_session(row.session, p)) for row, p in released]
        dropped = await repository.drop_sessions(
            conn, [(e.tenantid, e.data.match_id) for e in of["match-ended"]]
        )
        if dropped:
            self.ignored.labels("not_confirmed").inc(dropped)
            log.info("held sessions dropped: match ended unconfirmed", sessions=dropped)
        return planned

    def _relationships(
        self,
        of: dict[str, list[CloudEvent]],
        known: Mapping[tuple[str, str], domain.KnownMatch],
    ) -> list[tuple[Cause, list[Planned]]]:
        """Check-in and closing feedback requests, and stall nudges. A check-in or a nudge read
        after its match's end (another topic) is pointless and dropped; a closing request
        always goes, congratulating when the end read so far says the relationship completed."""
        planned: list[tuple[Cause, list[Planned]]] = []
        for e in of["feedback-requested"]:
            match = known.get((e.tenantid, e.data.match_id))
            if e.data.kind == "checkin" and match is not None and match.ended:
                self.ignored.labels("match_ended").inc()
                continue
            plan = domain.for_feedback_request(e.data, match.outcome if match else None)
            if not plan:
                self.ignored.labels("not_a_party").inc()
                log.warning("feedback requested of someone not of the match", event_id=e.id)
                continue
            planned.append((Cause.of(e), plan))
        for e in of["relationship-stalled"]:
            match = known.get((e.tenantid, e.data.match_id))
            if match is not None and match.ended:
                self.ignored.labels("match_ended").inc()
                continue
            planned.append((Cause.of(e), domain.for_stall(e.data)))
        return planned


MATCHING_OWNS = frozenset({"match-responded", "session-completed"})


def drop_invalid_responses(
    records: Sequence[Any], decode: Callable[[Any], CloudEvent]
) -> tuple[list[Any], int]:
    """`match-responded` and `session-completed` belong to matching, which dead-letters the
    invalid ones; we only read them for reminders and feedback requests. An invalid one (by the
    pipeline's own `decode`) is dropped here, silently, before the pipeline would dead-letter it a
    second time. Returns the records to process and how many were dropped."""
    kept = []
    for record in records:
        if record.topic in MATCHING_OWNS:
            try:
                decode(record)
            except Rejected:
                continue
            except Exception:  # a defect, not a refusal: the pipeline isolates and answers it
                log.exception("decoding a record of matching's failed", topic=record.topic)
        kept.append(record)
    return kept, len(records) - len(kept)


def _by_type(events: Sequence[CloudEvent]) -> dict[str, list[CloudEvent]]:
    grouped: dict[str, list[CloudEvent]] = {
        t: []
        for t in (
            "enrolment-updated",
            "enrolment-ended",
            "match-responded",
            "session-completed",
            *MATCH_EVENTS,
        )
    }
    for event in events:
        grouped.setdefault(event.type, []).append(event)
    return grouped


def _contact(event: CloudEvent) -> ContactRow:
    d = event.data
    return ContactRow(
        event.tenantid,
        d.person_id,
        d.role,
        d.display_name,
        d.email,
        list(d.languages),
        d.timezone,
        d.registered_at,
        [x.model_dump() for x in d.expertise],
        [g.model_dump() for g in d.goals],
        list(d.offers),
        list(d.learning_interests),
    )


def _confirmed(of: dict[str, list[CloudEvent]]) -> list[tuple[str, str]]:
    """The matches this batch says were confirmed (see domain.implies_confirmation)."""
    return [
        (e.tenantid, e.data.match_id)
        for t in MATCH_EVENTS
        for e in of[t]
        if domain.implies_confirmation(e)
    ]


def _match_rows(events: Sequence[CloudEvent]) -> list[MatchRow]:
    """Every event about a match says who is who, and how far it got at least: a check-in or a
    stall says it was confirmed, even when match-confirmed has not been read yet."""
    states = {
        "match-proposed": "proposed",
        "match-confirmed": "confirmed",
        "feedback-requested": "confirmed",
        "relationship-stalled": "confirmed",
        "match-ended": "ended",
    }
    return [
        MatchRow(
            e.tenantid,
            e.data.match_id,
            e.data.program_id,
            e.data.mentee_id,
            e.data.mentor_id,
            getattr(e.data, "expires_at", None),
            states[e.type],
            confirmed=domain.implies_confirmation(e),
            outcome=e.data.outcome if e.type == "match-ended" else None,
            explanation=json.dumps(domain.explanation(e.data))
            if e.type == "match-proposed"
            else None,
        )
        for e in events
        if e.type in states
    ]
