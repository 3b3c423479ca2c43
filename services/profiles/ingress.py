"""HTTP ingress: `POST /events`, the CloudEvents HTTP binding, for HR systems that speak HTTP.

Three ways in, chosen by Content-Type as the binding says: one event in structured mode
(`application/cloudevents+json`), up to MAX_BATCH in a batch (`application/cloudevents-batch+json`),
or one in binary mode (`ce-` headers, the body is `data`). The caller is a tenant, known by its
bearer token (HTTP_INGRESS_TOKENS); every event must be that tenant's.

Each event is checked by the contract exactly as a Kafka record is (`decode_record`, with the
tenants' signing keys), then published to its topic, the way an HR system publishing to Kafka
would, and the answer waits until Kafka has acknowledged every accepted event (acks=all). The
consumers apply them through their usual pipeline: one path, one set of rules. The answer lists
each event: accepted (with its id) or rejected (with the dead-letter code and reason). A rejected
event is answered, not dead-lettered: the sender has it and the reason, and a dead letter could be
replayed onto Kafka by an operator, another tenant's event included.

An event accepted before (same tenant, source and id) is answered `duplicate` and not published
again: retrying a request is safe.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_to_bytes

import asyncpg
import msgspec
from aiokafka.errors import KafkaError
from faststream.asgi.types import Receive, Scope, Send
from prometheus_client import Counter

from services.profiles.settings import MAX_BATCH, ProfilesSettings
from shared.contract.envelope import (
    BATCH,
    MAX_DEPTH,
    STRUCTURED,
    Headers,
    Rejected,
    decode_record,
    record_key,
)
from shared.contract.events import EVENT_MODELS
from shared.contract.topics import INGRESS_TOPICS
from shared.runtime.db.columns import columns
from shared.runtime.http import Disconnected, TooLarge, header, media_type, read_body, send_json
from shared.runtime.logging import get_logger
from shared.runtime.rate_limit import RateLimits
from shared.runtime.service import Runtime

log = get_logger(__name__)

PATH = "/events"
ALLOW = ((b"allow", b"POST"),)
DESCRIPTION = f"""**POST /events**: send HR (and apps') events over HTTP, the CloudEvents HTTP binding.

- `Authorization: Bearer <token>`: your tenant's token (HTTP_INGRESS_TOKENS). Every event's
  `tenantid` must be that tenant.
- One event: `Content-Type: {STRUCTURED}` (structured), or binary mode: `ce-specversion`, `ce-id`,
  `ce-source`, `ce-type`, `ce-time`, `ce-tenantid` headers (percent-encoded), the `data` as the
  body, `Content-Type: application/json`.
- A batch: `Content-Type: {BATCH}`, a JSON array of 1 to {MAX_BATCH} events.
- Each event is checked by contract v1 as on Kafka, then published to the topic named by its
  `type`; the answer comes once Kafka has them (acks=all).
- Answer: `{{"accepted": n, "rejected": m, "events": [{{"index", "id", "status", "code",
  "reason"}}]}}`, `status` accepted, duplicate (sent before: not published again) or rejected
  (with the dead-letter `code` and `reason`). **202** all accepted; **207** some rejected;
  **400** all rejected; **403** all were another tenant's.
- The whole request refused: `{{"error": {{"code", "reason"}}}}`. **401** no or unknown token;
  **413** body over HTTP_INGRESS_MAX_BYTES or more than {MAX_BATCH} events; **415** another
  content type; **400** a batch that is not a JSON array; **429** over the tenant's
  HTTP_INGRESS_RATE (events a second; `Retry-After` says when); **503** Kafka or the database
  away (send again: it is safe).
"""


@dataclass(slots=True)
class Outcome:
    """What became of one event of the request."""

    index: int
    id: str | None
    status: str = "accepted"  # accepted | duplicate | rejected
    code: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "id": self.id, "status": self.status}
        if self.status == "rejected":
            body |= {"code": self.code, "reason": self.reason}
        return body


@dataclass(slots=True)
class Valid:
    """An event that passed the contract, and the Kafka record that carries it: its topic, key
    and (tenant, source, id). Not the event itself: a thousand parsed events held while Kafka
    acknowledges would be more for the garbage collector to walk, again and again."""

    outcome: Outcome
    topic: str
    key: bytes
    seen_as: tuple[str, str, str]
    value: bytes
    headers: Headers


class Problem(Exception):
    """The whole request is refused: its status, a stable code and a reason for people."""

    def __init__(
        self, status: int, code: str, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.headers = status, code, reason, headers


class EventsEndpoint:
    """The ASGI app served at PATH."""

    def __init__(self, runtime: Runtime, settings: ProfilesSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.tokens = {
            t: k.get_secret_value().encode() for t, k in settings.http_ingress_tokens.items()
        }
        self.signing_keys = {
            t: k.get_secret_value().encode() for t, k in settings.ingress_signing_keys.items()
        }
        self.signature_max_age = timedelta(hours=settings.signature_max_age_hours)
        self.limits = RateLimits(settings.http_ingress_rate, settings.http_ingress_burst)
        self.events = Counter(
            "mentornet_http_events",
            "Events posted to /events, by outcome (accepted, duplicate, rejected:<code>)",
            ["outcome"],
            registry=runtime.registry,
        )
        self.requests = Counter(
            "mentornet_http_requests",
            "Requests to /events, by status",
            ["status"],
            registry=runtime.registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = None
        try:
            if scope["method"] != "POST":
                raise Problem(405, "method_not_allowed", "send events with POST", ALLOW)
            tenant = self._tenant(scope)
            outcomes = await self._handle(scope, receive, tenant)
        except Problem as problem:
            self.requests.labels(str(problem.status)).inc()
            log.info("events refused", tenant=tenant, status=problem.status, code=problem.code)
            await send_json(
                send,
                problem.status,
                {"error": {"code": problem.code, "reason": problem.reason}},
                problem.headers,
            )
            return
        status = _status(outcomes)
        self.requests.labels(str(status)).inc()
        accepted = sum(o.status != "rejected" for o in outcomes)
        log.info(
            "events posted", tenant=tenant, status=status, events=len(outcomes), accepted=accepted
        )
        await send_json(
            send,
            status,
            {
                "accepted": accepted,
                "rejected": len(outcomes) - accepted,
                "events": [o.to_json() for o in outcomes],
            },
        )

    def _tenant(self, scope: Scope) -> str:
        """The tenant whose token the request bears (compared in constant time)."""
        scheme, _, token = header(scope, b"authorization").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "unauthorized",
                "send your tenant's token as 'Authorization: Bearer <token>'",
                ((b"www-authenticate", b'Bearer realm="mentornet"'),),
            )
        given = token.strip().encode()
        found = [t for t, known in self.tokens.items() if hmac.compare_digest(given, known)]
        if not found:
            raise Problem(
                401,
                "unauthorized",
                "this token is not known: ask the operator for your tenant's token",
                ((b"www-authenticate", b'Bearer realm="mentornet", error="invalid_token"'),),
            )
        return found[0]

    async def _handle(self, scope: Scope, receive: Receive, tenant: str) -> list[Outcome]:
        try:
            body = await read_body(scope, receive, self.settings.http_ingress_max_bytes)
        except TooLarge:
            raise Problem(
                413,
                "too_large",
                f"the body is over {self.settings.http_ingress_max_bytes} bytes: send fewer "
                "events per request",
            ) from None
        except Disconnected:
            raise Problem(400, "incomplete", "the body ended before its end") from None
        posted = _posted(scope, body)
        self._admit(tenant, len(posted))
        valid: list[Valid] = []
        outcomes: list[Outcome] = []
        for index, event in enumerate(posted):
            outcome, checked = self._check(index, event, tenant)
            outcomes.append(outcome)
            if checked is not None:
                valid.append(checked)
        if valid:
            await self._publish(valid)
        tally = collections.Counter(
            o.status if o.status != "rejected" else f"rejected:{o.code}" for o in outcomes
        )
        for label, count in tally.items():  # one call a label, not one an event
            self.events.labels(label).inc(count)
        return outcomes

    def _admit(self, tenant: str, events: int) -> None:
        """The tenant's rate limit, in events: the whole request passes, or none of it."""
        bucket = self.limits.bucket(tenant)
        if bucket.try_acquire(0.0, tokens=events) is None:
            wait = math.ceil(bucket.retry_in(events))
            raise Problem(
                429,
                "rate_limited",
                f"over {self.settings.http_ingress_rate:g} events a second for this tenant: "
                f"retry in {wait} s",
                ((b"retry-after", str(wait).encode()),),
            )

    def _check(self, index: int, posted: Posted, tenant: str) -> tuple[Outcome, Valid | None]:
        """One event through the contract, as its topic's consumer will read it."""
        outcome = Outcome(index, posted.id if isinstance(posted.id, str) else None)
        try:
            topic = _topic_of(posted)
            event = decode_record(
                posted.value,
                posted.headers,
                topic=topic,
                max_bytes=self.settings.max_event_bytes,
                signing_keys=self.signing_keys,
                signature_max_age=self.signature_max_age,
            )
            if event.tenantid != tenant:
                raise Rejected(
                    "forbidden_tenant",
                    f"'tenantid' is {event.tenantid!r}; this token may send events of tenant {tenant!r} only",
                )
        except Rejected as rejected:
            outcome.status, outcome.code, outcome.reason = (
                "rejected",
                rejected.code,
                rejected.reason,
            )
            return outcome, None
        outcome.id = event.id
        seen_as = (event.tenantid, event.source, event.id)
        key = record_key(event).encode()
        return outcome, Valid(outcome, event.type, key, seen_as, posted.value, posted.headers)

    async def _publish(self, valid: list[Valid]) -> None:
        """Publish what was not accepted before, wait for Kafka's acknowledgements, then
        remember it; a failure answers 503 and remembers nothing (a retry publishes again, and
        the consumers drop what they already have)."""
        try:
            async with self.runtime.pool.acquire() as conn:
                seen = await _accepted_before(conn, [v.seen_as for v in valid])
            fresh: dict[tuple[str, str, str], Valid] = {}
            for item in valid:
                if item.seen_as in seen or item.seen_as in fresh:
                    item.outcome.status = "duplicate"
                else:
                    fresh[item.seen_as] = item
            producer = self.runtime.producer
            futures = [
                await producer.send(
                    item.topic, item.value, key=item.key, headers=list(item.headers)
                )
                for item in fresh.values()
            ]
            await asyncio.gather(*futures)
            async with self.runtime.pool.acquire() as conn:
                await _remember(conn, list(fresh))
        except (OSError, KafkaError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise _unavailable(error) from None


def _unavailable(error: BaseException) -> Problem:
    log.warning("events not published", error=type(error).__name__)
    return Problem(
        503,
        "unavailable",
        "Kafka or the database did not answer; nothing is certain: send the same request "
        "again (it is safe: events already accepted are not published twice)",
        ((b"retry-after", b"5"),),
    )


@dataclass(frozen=True, slots=True)
class Posted:
    """One event as posted, in the Kafka record that will carry it, and its `id` and `type` as
    sent (read before the contract check, to name the event in the answer and pick its topic)."""

    value: bytes
    headers: Headers
    id: Any = None
    type: Any = None


def _posted(scope: Scope, body: bytes) -> list[Posted]:
    """The request's events, in the mode they came in."""
    kind = media_type(scope)
    traceparent = header(scope, b"traceparent")
    trace = (("traceparent", traceparent.encode()),) if traceparent else ()
    structured = (("content-type", STRUCTURED.encode()), *trace)
    if kind == STRUCTURED:
        return [_structured(body, structured)]
    if kind == BATCH:
        return [_structured(item, structured) for item in _batch(body)]
    if kind.startswith("application/cloudevents"):
        raise Problem(
            415, "unsupported_content_type", f"{kind!r}: send {STRUCTURED!r} or {BATCH!r}"
        )
    # Percent-decoded to bytes, kept as bytes: the contract check refuses what is not UTF-8.
    attributes = {
        name[3:].decode("latin-1").lower(): unquote_to_bytes(value)
        for name, value in scope.get("headers", ())
        if name.lower().startswith(b"ce-") and len(name) > 3
    }
    if "specversion" not in attributes:
        raise Problem(
            415,
            "unsupported_content_type",
            f"content-type {kind or 'missing'!r} without a 'ce-specversion' header: send one "
            f"event as {STRUCTURED!r}, a batch as {BATCH!r}, or one in binary mode (ce- headers, "
            "the data as the body)",
        )
    content_type = header(scope, b"content-type")
    headers = (
        *((f"ce_{name}", value) for name, value in attributes.items()),
        *((("content-type", content_type.encode()),) if content_type else ()),
        *trace,
    )
    return [Posted(body, headers, _text(attributes.get("id")), _text(attributes.get("type")))]


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if raw is not None else None


class _Head(msgspec.Struct):
    """What is read of an event before the contract check: its id and type, if it has them."""

    id: Any = None
    type: Any = None


_HEAD = msgspec.json.Decoder(_Head)
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])  # each event's own bytes, unparsed


def _structured(value: bytes, headers: Headers) -> Posted:
    try:
        head = _HEAD.decode(value)
    except msgspec.DecodeError:  # not JSON, not an object: the contract check says which
        return Posted(value, headers)
    return Posted(value, headers, head.id, head.type)


def _batch(body: bytes) -> list[bytes]:
    """The events of a batch, each as the very bytes it was sent as (msgspec splits the array
    without building the events: the contract check parses each once)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:  # as for one event: JSON on the wire is UTF-8
        raise Problem(
            400, "invalid_utf8", f"the batch is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        items = _ITEMS.decode(body)
    except msgspec.ValidationError:
        raise Problem(400, "not_an_array", "a batch is a JSON array of events") from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "not_json", f"the batch is not JSON: {exc}") from None
    except RecursionError:
        raise Problem(400, "too_deep", f"the batch nests deeper than {MAX_DEPTH} levels") from None
    if not items:
        raise Problem(400, "empty_batch", "the batch has no event")
    if len(items) > MAX_BATCH:
        raise Problem(
            413, "too_many_events", f"{len(items)} events; a batch holds at most {MAX_BATCH}"
        )
    return [bytes(item) for item in items]


def _topic_of(posted: Posted) -> str:
    """The topic an event goes to: its `type`, which must be one the outside may publish."""
    if not isinstance(posted.type, str):
        return ""  # the contract check says what is wrong
    if posted.type in INGRESS_TOPICS:
        return posted.type
    if posted.type in EVENT_MODELS:
        raise Rejected(
            "not_ingress", f"'type' {posted.type!r} is published by mentornet, not sent to it"
        )
    raise Rejected("unknown_type", f"'type' {posted.type!r} is not an event of contract v1")


def _status(outcomes: list[Outcome]) -> int:
    """202 when every event is accepted; 207 when some are refused; when all are: 403 if they
    are all another tenant's, else 400."""
    rejected = [o for o in outcomes if o.status == "rejected"]
    if not rejected:
        return 202
    if len(rejected) < len(outcomes):
        return 207
    return 403 if all(o.code == "forbidden_tenant" for o in rejected) else 400


async def _accepted_before(
    conn: asyncpg.Connection, keys: list[tuple[str, str, str]]
) -> set[tuple[str, str, str]]:
    rows = await conn.fetch(
        """SELECT tenant_id, source, event_id FROM http_ingress
           WHERE (tenant_id, source, event_id) IN
                 (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))""",
        *columns(keys, 3),
    )
    return {(r["tenant_id"], r["source"], r["event_id"]) for r in rows}


async def _remember(conn: asyncpg.Connection, keys: list[tuple[str, str, str]]) -> None:
    if keys:
        await conn.execute(
            """INSERT INTO http_ingress (tenant_id, source, event_id)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING""",
            *columns(keys, 3),
        )
