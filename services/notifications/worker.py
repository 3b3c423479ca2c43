"""The delivery worker: claims due delivery rows, renders, sends, and records the outcome.

- Claims use `FOR UPDATE SKIP LOCKED` plus a lease (`locked_until`), so replicas share the rows
  and a crashed replica's rows come back after the lease.
- At most `delivery_concurrency` sends are in flight; claims are sized to the free slots, so no
  claimed row waits in a local queue while its lease runs out.
- A failed send is rescheduled (`next_attempt_at`, exponential backoff with jitter) and frees
  its slot at once: a struggling server slows only its own rows.
- Outcomes are written in batches (one UPDATE every `delivery_flush_seconds`), together with
  the notification-delivered / -failed events in the outbox, in the same transaction.

Crash window: a message the server accepted but whose outcome was not yet written is sent again
once its lease ends, with the same Message-ID / Idempotency-Key (see docs/notifications.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import asyncpg
import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.notifications import reading, repository
from services.notifications.domain import NEEDS_PARTNER, Finished, Outcome, backoff_seconds
from services.notifications.errors import DeliveryError, PermanentError
from services.notifications.links import Link, LinkSigner
from services.notifications.rendering import Rendered, Templates
from services.notifications.settings import NotificationSettings
from services.notifications.smtp import SmtpSender, build_message, tenant_server
from services.notifications.webhook import WebhookSender, origin
from shared.contract.topics import dead_letter_topic
from shared.runtime.db.outbox import OutboxRecord, enqueue
from shared.runtime.db.pool import transaction
from shared.runtime.logging import EMAIL, get_logger
from shared.runtime.rate_limit import RateLimits
from shared.runtime.tracing import span

log = get_logger(__name__)
SERVICE = "notifications"
_JSON = msgspec.json.Encoder()
PROPOSALS = frozenset({"match-proposal", "match-reminder"})  # answered with accept / decline
# addresses stay hidden until both accept: only these kinds, sent once they did, give the other's
SHOW_PARTNER_EMAIL = frozenset({"match-introduction", "stall-nudge"})


@dataclass
class Claimed:
    """A leased row and everything needed to send it."""

    row: asyncpg.Record
    lease_ends: float  # time.monotonic()

    def __getattr__(self, name: str) -> Any:
        return self.row[name]

    @cached_property
    def data(self) -> dict[str, Any]:
        """The row's context, decoded once (templates and webhooks both read it)."""
        return dict(repository.jsonb(self.row["context"]))


class DeliveryWorker:
    def __init__(
        self,
        settings: NotificationSettings,
        registry: CollectorRegistry,
        templates: Templates | None = None,
    ) -> None:
        self.settings = settings
        self.templates = templates or Templates()
        self.signer = LinkSigner([k.get_secret_value() for k in settings.link_signing_keys])
        self.smtp = SmtpSender(settings)
        self.webhooks = WebhookSender(settings)
        self.smtp_limits = RateLimits(settings.smtp_rate_per_second, settings.smtp_burst)
        self.webhook_limits = RateLimits(settings.webhook_rate_per_second, settings.webhook_burst)
        self._pool: asyncpg.Pool | None = None
        self._dsn = ""
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self._wake = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._results: list[Outcome] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.outcomes = Counter(
            "mentornet_notifications",
            "Delivery attempts by channel and outcome",
            ["channel", "outcome"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "mentornet_notification_send_seconds",
            "Time to hand one notification to its server",
            ["channel"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "mentornet_notifications_in_flight", "Sends in progress", registry=registry
        )

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "delivery worker used before start"
        return self._pool

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="notifications-claim"),
            asyncio.create_task(self._flush_loop(), name="notifications-flush"),
            asyncio.create_task(self._listen_loop(), name="notifications-listen"),
        ]

    async def stop(self) -> None:
        """Stop claiming, let the sends in flight finish, write their outcomes, close."""
        if not self._loops:  # never started (startup failed before the pool opened)
            await self.smtp.close()
            await self.webhooks.close()
            return
        claim_loop, *others = self._loops
        claim_loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await claim_loop
        if self._sends:
            await asyncio.wait(self._sends, timeout=self.settings.graceful_timeout)
        for send in list(self._sends):  # still stuck: its lease will hand the row back
            send.cancel()
        for task in others:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.flush()
        await self.smtp.close()
        await self.webhooks.close()

    # --- claiming ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        s = self.settings
        min_claim = max(1, s.delivery_concurrency // 4)  # claim in batches, not row by row
        failures = 0
        while True:
            free = s.delivery_concurrency - self._in_flight
            if free < min_claim:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()  # a NOTIFY during the claim must not be lost
            try:
                rows = await repository.claim(
                    self.pool, free, s.delivery_lease_seconds, s.delivery_tenants
                )
                failures = 0
            except Exception as exc:  # these loops must outlive anything (InternalClientError...)
                failures += 1
                log.warning("claim failed; will retry", error=repr(exc))
                await asyncio.sleep(min(0.2 * 2**failures, 10.0))
                continue
            lease_ends = time.monotonic() + s.delivery_lease_seconds
            for row in rows:
                self._in_flight += 1
                task = asyncio.create_task(self._send_one(Claimed(row, lease_ends)))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            self.in_flight.set(self._in_flight)
            if len(rows) < free:
                await self._idle()

    async def _idle(self) -> None:
        """Sleep until a NOTIFY, a finished retry, or the next due row (at most a poll)."""
        delay = self.settings.delivery_poll_seconds
        with contextlib.suppress(Exception):
            due = await repository.seconds_until_due(self.pool, self.settings.delivery_tenants)
            if due is not None:
                delay = min(delay, max(due, 0.005))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _listen_loop(self) -> None:
        """LISTEN for new rows; reconnects after an outage (polling covers the gap)."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda *_, done=closed: done.set())
                await conn.add_listener(repository.NOTIFY_CHANNEL, lambda *_: self._wake.set())
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listener failed; reconnecting", error=repr(exc))
                await asyncio.sleep(2)
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()

    # --- sending -------------------------------------------------------------------------------

    async def _send_one(self, claimed: Claimed) -> None:
        try:
            outcome = await self.deliver(claimed)
        except Exception as exc:  # a bug must not lose the row: retry it like a failed send
            log.exception("delivery crashed", notification_id=str(claimed.id))
            outcome = self._retry(claimed, DeliveryError(f"internal error: {exc!r}"))
        finally:
            self._in_flight -= 1
            self._slot_freed.set()
        self.outcomes.labels(claimed.channel, _label(outcome)).inc()
        self._results.append(outcome)
        self._flush_wanted.set()

    async def deliver(self, c: Claimed) -> Outcome:
        """Decide, render and send one claimed row; never raises for a send error."""
        now = datetime.now(UTC)
        if now >= c.give_up_at:
            reason = c.last_error or "recipient unknown"
            return Outcome(c.id, "failed", error=f"expired: {reason}")
        if not c.recipient_known:
            return self._wait_for_contact(c, now)
        if c.recipient_email is None:
            return Outcome(c.id, "cancelled", error="recipient erased")
        if c.opted_out:
            return Outcome(c.id, "cancelled", error=f"opted out of {c.category}")
        partner_erased = c.partner_known and c.partner_email is None
        # a proposal planned before proposals named the partner has none: sent without a name
        names_partner = c.kind in NEEDS_PARTNER and c.partner_id is not None
        if names_partner and (not c.partner_known or partner_erased):
            if partner_erased:
                return Outcome(c.id, "cancelled", error="partner erased")
            return self._wait_for_contact(c, now)

        with span(
            f"notifications send {c.channel}",
            c.row.get("traceparent"),
            "notifications",
            kind=c.kind,
        ):
            try:
                rendered, links = self._render(c, partner_erased, now)
                if c.channel == "email":
                    return await self._send_email(c, rendered)
                return await self._send_webhook(c, rendered, {**c.data, "links": links})
            except DeliveryError as exc:
                return self._retry(c, exc)
            except Exception as exc:  # e.g. a template error: fixable by a deploy, so retried
                log.warning("render failed", notification_id=str(c.id), error=repr(exc))
                return self._retry(c, DeliveryError(f"{type(exc).__name__}: {exc}"))

    def _render(
        self, c: Claimed, partner_erased: bool, now: datetime
    ) -> tuple[Rendered, dict[str, str]]:
        """The message in the recipient's language, and its answer links (a webhook passes
        them on: an app may draw its own buttons)."""
        context = dict(c.data)
        locale = self.templates.locale_for(c.recipient_languages)
        role = context.get("role", "")
        partner = None
        if c.partner_known and not partner_erased:
            partner = {"name": c.partner_name}
            if c.kind in SHOW_PARTNER_EMAIL:
                partner["email"] = c.partner_email
        links = answer_links(
            c.kind,
            c.tenant_id,
            c.recipient_id,
            context,
            self.signer,
            self.settings.public_base_url,
            now + timedelta(days=self.settings.feedback_link_days),
        )
        context.update(
            recipient={"name": c.recipient_name},
            partner=partner,
            timezone=c.recipient_timezone,
            reasons=reading.reasons(context.get("explanation") or [], role, locale),
            profile=self._profile(c, partner, role, locale, now),
            links=links,
            feedback_link_days=round(self.settings.feedback_link_days),
        )
        return self.templates.render(c.kind, locale, context), links

    @staticmethod
    def _profile(
        c: Claimed, partner: dict[str, Any] | None, role: str, locale: str, now: datetime
    ) -> reading.Profile | None:
        """Who is proposed, for a proposal and its reminder (the reader decides on it)."""
        if c.kind not in PROPOSALS:
            return None
        shown = repository.contact_shown(c.row, "partner_") if partner else None
        person = shown.as_person("mentor" if role == "mentee" else "mentee") if shown else None
        return reading.profile(person, locale, now)

    async def _send_email(self, c: Claimed, rendered: Rendered) -> Outcome:
        server = tenant_server(c.endpoint, c.secret) if c.endpoint else self.smtp.default
        deferred = await self._take_token(c, self.smtp_limits.bucket(server.key))
        if deferred:
            return deferred
        message = build_message(
            notification_id=str(c.id),
            sender=self.settings.smtp_from,
            to_name=c.recipient_name or "",
            to_email=c.recipient_email,
            rendered=rendered,
            kind=c.kind,
        )
        started = time.monotonic()
        await self.smtp.send(server, c.recipient_email, message)
        self.send_seconds.labels("email").observe(time.monotonic() - started)
        return Outcome(c.id, "sent", attempted=True)

    async def _send_webhook(self, c: Claimed, rendered: Rendered, data: dict[str, Any]) -> Outcome:
        if not c.endpoint or not c.secret:
            raise PermanentError("webhook channel without endpoint or secret")
        deferred = await self._take_token(c, self.webhook_limits.bucket(origin(c.endpoint)))
        if deferred:
            return deferred
        body = _JSON.encode(  # compact UTF-8, like json.dumps(ensure_ascii=False), 5x faster
            {
                "notification_id": str(c.id),
                "tenant_id": c.tenant_id,
                "kind": c.kind,
                "category": c.category,
                "source_event_id": c.source_event_id,
                "recipient": {
                    "person_id": c.recipient_id,
                    "display_name": c.recipient_name,
                    "email": c.recipient_email,
                    "locale": rendered.locale,
                },
                "subject": rendered.subject,
                "text": rendered.text,
                "html": rendered.html,
                "data": data,
            }
        )
        started = time.monotonic()
        await self.webhooks.send(c.endpoint, c.secret, str(c.id), body)
        self.send_seconds.labels("webhook").observe(time.monotonic() - started)
        return Outcome(c.id, "sent", attempted=True)

    async def _take_token(self, c: Claimed, bucket: Any) -> Outcome | None:
        """Wait briefly for the endpoint's rate limit, or put the row back for later. Also
        refuse to start a send that could outlast the lease (another replica could take the
        row then and send it a second time)."""
        wait = bucket.try_acquire(self.settings.rate_limit_max_wait_seconds)
        if wait is None:
            later = datetime.now(UTC) + timedelta(seconds=bucket.retry_in())
            return Outcome(c.id, "pending", next_attempt_at=later, error=c.last_error)
        if wait:
            await asyncio.sleep(wait)
        timeout = max(self.settings.smtp_timeout, self.settings.webhook_timeout)
        if time.monotonic() + timeout > c.lease_ends:
            return Outcome(c.id, "pending", next_attempt_at=datetime.now(UTC), error=c.last_error)
        return None

    def _wait_for_contact(self, c: Claimed, now: datetime) -> Outcome:
        later = now + timedelta(seconds=self.settings.contact_poll_seconds)
        return Outcome(
            c.id, "pending", next_attempt_at=later, error="waiting for contact", waiting=True
        )

    def _retry(self, c: Claimed, exc: DeliveryError) -> Outcome:
        error = EMAIL.sub("[email]", str(exc))[:500]  # server replies may quote the address
        attempts = c.attempts + 1
        if exc.permanent or attempts >= self.settings.delivery_max_attempts:
            return Outcome(c.id, "failed", attempted=True, error=error)
        delay = exc.retry_after or backoff_seconds(
            attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
        )
        later = datetime.now(UTC) + timedelta(seconds=delay)
        log.info(
            "delivery will be retried",
            notification_id=str(c.id),
            channel=c.channel,
            attempt=attempts,
            retry_in=round(delay, 3),
            error=error,
        )
        return Outcome(c.id, "pending", attempted=True, next_attempt_at=later, error=error)

    # --- outcomes ------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(self.settings.delivery_flush_seconds)  # let a batch gather
            self._flush_wanted.clear()
            try:
                await self.flush()
                failures = 0
            except Exception as exc:  # these loops must outlive anything (InternalClientError...)
                failures += 1
                log.warning("writing outcomes failed; will retry", error=repr(exc))
                self._flush_wanted.set()
                await asyncio.sleep(min(0.2 * 2**failures, 10.0))

    async def flush(self) -> None:
        """Write the outcomes gathered so far, and their events, in one transaction."""
        batch, self._results = self._results, []
        if not batch:
            return
        try:
            async with transaction(self.pool) as conn:
                finished = await repository.record_outcomes(conn, batch)
                await enqueue(conn, SERVICE, outcome_records(finished))
        except BaseException:
            self._results[:0] = batch  # keep them for the next try
            raise
        for f in finished:
            if f.state == "failed":
                log.warning(
                    "delivery failed for good",
                    notification_id=str(f.id),
                    channel=f.channel,
                    kind=f.kind,
                    attempts=f.attempts,
                    error=f.error,
                )
        if any(o.state == "pending" for o in batch):
            self._wake.set()  # rescheduled rows may be due before the claimer's next poll


def answer_links(
    kind: str,
    tenant_id: str,
    recipient_id: str,
    context: dict[str, Any],
    signer: LinkSigner,
    base_url: str,
    feedback_until: datetime,
) -> dict[str, str]:
    """The signed links an email is answered with: accept / decline for a proposal and its
    reminder (working until the proposal expires), a short form for feedback requests (until
    `feedback_until`); other kinds ask nothing."""
    match_id = context["match_id"]
    if kind in PROPOSALS:
        expires = datetime.fromisoformat(context["expires_at"])
        link = Link(tenant_id, match_id, recipient_id, "respond", expires)
        return signer.choices(base_url, link, ("accept", "decline"))
    action = _feedback_action(kind, context)
    if action is None:
        return {}
    link = Link(tenant_id, match_id, recipient_id, action, feedback_until)
    return {"feedback": signer.url(base_url, link)}


def _feedback_action(kind: str, context: dict[str, Any]) -> str | None:
    """What a feedback link answers (links.Link.action); None: the kind asks no feedback."""
    if kind == "checkin-request":
        return f"checkin:{context['checkin']}"
    if kind == "feedback-request":  # after one session
        return f"checkin:session-{context['session_id']}"
    if kind == "closing-feedback-request":
        return "closing"
    return None


def outcome_records(finished: list[Finished]) -> list[OutboxRecord]:
    """notification-delivered / -failed for each row, plus a dead letter for each failure so
    operators find it where every other rejected thing goes (dlq.notifications)."""
    now = datetime.now(UTC)
    records = []
    for f in finished:
        event = f.event(now)
        records.append(OutboxRecord.of_event(event.type, f.recipient_id, event))
        if f.state == "failed":
            dead = OutboxRecord.of_event(dead_letter_topic(SERVICE), f.recipient_id, event)
            headers = {
                "dlq-reason-code": "delivery_failed",
                "dlq-reason": f.error or "unknown",
                "dlq-topic": event.type,
                "dlq-service": SERVICE,
                "dlq-time": now.isoformat(),
            }
            records.append(
                OutboxRecord(
                    dead.topic,
                    dead.key,
                    dead.value,
                    dead.headers + tuple((k, v.encode()) for k, v in headers.items()),
                )
            )
    return records


def _label(outcome: Outcome) -> str:
    if outcome.state != "pending":
        return outcome.state
    if outcome.waiting:
        return "waiting"
    return "retry" if outcome.attempted else "deferred"
