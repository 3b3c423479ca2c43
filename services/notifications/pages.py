"""The answer page: people answer a proposal, or give feedback, from an email's signed link.

`GET /answer?t=TOKEN` only shows, and never changes anything: mail scanners follow links. `POST
/answer` checks the link and everything the page checked again, then in one transaction keeps
the answer (a link works once) and puts the event it becomes, `match-responded` or
`feedback-given`, in the outbox, read back first with the contract exactly as matching will read
it; the relay publishes it. Whatever is refused is a page in the reader's language with its own
status, and changes nothing. The token is a bearer credential: it is never logged (the match id
and the outcome are).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from faststream.asgi.types import Receive, Scope, Send
from prometheus_client import Counter
from pydantic import ValidationError

from services.notifications import reading, repository
from services.notifications.links import BadLink, Link, LinkSigner
from services.notifications.rendering import Templates
from services.notifications.repository import AnswerView, EarlierAnswer, PageContact, PageMatch
from services.notifications.settings import NotificationSettings
from shared.contract.envelope import CloudEvent, Rejected, decode_record
from shared.contract.events import FeedbackGiven, GoalReached, MatchResponded, Payload
from shared.runtime.db.outbox import OutboxRecord, enqueue
from shared.runtime.db.pool import transaction
from shared.runtime.http import Disconnected, TooLarge, header, media_type, read_body
from shared.runtime.logging import get_logger
from shared.runtime.service import Runtime

log = get_logger(__name__)

PATH = "/answer"
SOURCE = "mentornet/notifications/answer-page"
_IDS = uuid.UUID("0c1f4e6b-52a8-4d3e-9a71-616e73776572")  # namespace of the answers' event ids
FORM = "application/x-www-form-urlencoded"
MAX_TEXT = 2000  # characters of a reason or a comment (FreeText in the contract)
MAX_FIELDS = 100  # a form with more fields is not ours
DECISIONS = {"accept": "accepted", "decline": "declined"}  # the form's choice -> the event's
RATINGS = frozenset("12345")
GOAL_ANSWERS = frozenset({"yes", "partly", "no"})
SECURITY_HEADERS = (
    (b"content-type", b"text/html; charset=utf-8"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
        b"frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),  # the token is in the page's address
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)
ALLOW = ((b"allow", b"GET, HEAD, POST"),)
DESCRIPTION = """**GET /answer?t=TOKEN** shows the page an email's signed link opens (a proposal to
accept or decline, a feedback form), in the reader's language; it changes nothing. **POST
/answer** (a form: `t`, and `decision` or the feedback fields) records the answer once and
publishes `match-responded` or `feedback-given`. Refusals are pages with their status: 400
(forged link, bad form), 403, 404, 409 (already answered), 410 (expired or closed), 413, 503.
See docs/notifications.md."""


class Refused(Exception):
    """What the page refuses: the problem page's code, the HTTP status, the reader's locale and
    the match when known, and what the page says about it."""

    def __init__(
        self,
        code: str,
        status: int,
        locale: str | None = None,
        match_id: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.locale = locale
        self.match_id = match_id
        self.context = context


class FormProblem(Exception):
    """A form value the page refuses; its argument names the field."""


@dataclass(frozen=True)
class Reader:
    """The person a link is for, on their side of its match."""

    token: str
    link: Link
    role: str  # mentee or mentor
    locale: str
    contact: PageContact | None  # None: not known (yet), or erased

    @property
    def timezone(self) -> str | None:
        return self.contact.timezone if self.contact else None

    @property
    def name(self) -> str | None:
        return self.contact.display_name if self.contact else None

    @property
    def goals(self) -> list[str]:
        """The mentee's goals, asked about at closing (from their enrolment)."""
        if self.link.kind != "closing" or self.role != "mentee" or self.contact is None:
            return []
        return [str(goal["topic"]) for goal in self.contact.goals]

    def refused(self, code: str, status: int, **context: Any) -> Refused:
        return Refused(code, status, self.locale, self.link.match_id, **context)


@dataclass(frozen=True)
class Answer:
    data: Payload  # MatchResponded or FeedbackGiven
    kept: str  # what `answers` keeps and the page shows back: the decision or the rating

    @property
    def topic(self) -> str:
        return "match-responded" if isinstance(self.data, MatchResponded) else "feedback-given"


@dataclass(frozen=True)
class Page:
    status: int
    html: str
    outcome: str  # for the log and the metric: shown, recorded, or the problem's code
    match_id: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def send(self, send: Send, with_body: bool = True) -> None:
        body = self.html.encode()
        headers = [*SECURITY_HEADERS, (b"content-length", str(len(body)).encode()), *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body if with_body else b""})


class AnswerPage:
    """The ASGI app served at PATH."""

    def __init__(
        self, runtime: Runtime, settings: NotificationSettings, templates: Templates | None = None
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.templates = templates or Templates()
        self.signer = LinkSigner([k.get_secret_value() for k in settings.link_signing_keys])
        self.signing_keys = {
            t: k.get_secret_value().encode() for t, k in settings.ingress_signing_keys.items()
        }
        self.served = Counter(
            "mentornet_answer_pages",
            "Answer pages served, by outcome",
            ["method", "outcome"],
            registry=runtime.registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        fallback = self.templates.locale_for(_accepted_languages(header(scope, b"accept-language")))
        try:
            if method in ("GET", "HEAD"):
                page = await self._show(scope, fallback)
            elif method == "POST":
                page = await self._answer(scope, receive, fallback)
            else:
                raise Refused("method", 405)
        except Refused as refused:
            page = self._problem(refused, fallback)
        except Exception as error:  # the database away, say: the transaction kept nothing
            log.error("answer page failed", error=type(error).__name__)  # its text may quote data
            page = self._problem(Refused("unavailable", 503), fallback)
        log.info(
            "answer page",
            method=method,
            match_id=page.match_id,
            outcome=page.outcome,
            status=page.status,
        )
        self.served.labels(method, page.outcome).inc()
        await page.send(send, with_body=method != "HEAD")

    # --- GET: show, change nothing -------------------------------------------------------------

    async def _show(self, scope: Scope, fallback: str) -> Page:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = query.get("t", [""])[0]
        link = self._link(token)
        async with self.runtime.pool.acquire() as conn:
            view = await repository.answer_view(conn, *_key(link))
        reader = self._reader(token, link, view, fallback)
        if view.earlier is not None:
            return self._problem(_answered(reader, view.earlier, 200), fallback)
        match = _known(view)
        _still_open(reader, match)
        if link.kind == "respond":
            choice = query.get("choice", [""])[0]
            return self._proposal(reader, view, match, choice if choice in DECISIONS else None)
        return self._form_page(reader, view)

    def _proposal(
        self, reader: Reader, view: AnswerView, match: PageMatch, choice: str | None
    ) -> Page:
        other_role = "mentor" if reader.role == "mentee" else "mentee"
        other = view.other.as_person(other_role) if view.other else None
        html = self.templates.page(
            "proposal",
            reader.locale,
            {
                "token": reader.token,
                "choice": choice,  # only highlights: answering takes a POST
                "role": reader.role,
                "reader_name": reader.name,
                "other": reading.profile(other, reader.locale, datetime.now(UTC)),
                "reasons": reading.reasons(match.explanation, reader.role, reader.locale),
                "expires_at": match.expires_at,
                "timezone": reader.timezone,
                "other_accepted": view.other_decision == "accepted",
            },
        )
        return Page(200, html, "shown", reader.link.match_id)

    def _form_page(self, reader: Reader, view: AnswerView) -> Page:
        html = self.templates.page(
            "feedback",
            reader.locale,
            {
                "token": reader.token,
                "kind": reader.link.kind,
                "role": reader.role,
                "reader_name": reader.name,
                "other_name": view.other.display_name if view.other else None,
                "goals": reader.goals,
            },
        )
        return Page(200, html, "shown", reader.link.match_id)

    # --- POST: the answer, kept once, and its event --------------------------------------------

    async def _answer(self, scope: Scope, receive: Receive, fallback: str) -> Page:
        form = await self._form(scope, receive)
        token = form.get("t", [""])[0]
        link = self._link(token)
        key = _key(link)
        async with transaction(self.runtime.pool) as conn:
            # serialised with the match's confirmation or end (handlers.py) and other answers
            await repository.lock_matches(conn, [(link.tenant_id, link.match_id)])
            view = await repository.answer_view(conn, *key)
            reader = self._reader(token, link, view, fallback)
            if view.earlier is not None:
                raise _answered(reader, view.earlier, 409)
            _still_open(reader, _known(view))
            answer = _read(reader, form)
            event = CloudEvent.new(
                answer.topic, SOURCE, link.tenant_id, answer.data, id=_event_id(link)
            )
            record = self._record(event, reader)
            if not await repository.record_answer(conn, *key, answer.kept, event.id):
                raise _answered(reader, None, 409)  # kept by another request meanwhile
            await enqueue(conn, self.runtime.name, [record])
            if link.kind == "respond":  # as an app's answer would: no reminder for them now
                await repository.record_responses(conn, [(*key[:3], answer.kept)])
            html = self.templates.page(  # before the commit: once kept, the thanks must show
                "thanks",
                reader.locale,
                {
                    "kind": link.kind,
                    "decision": answer.kept if link.kind == "respond" else None,
                    "role": reader.role,
                    "other_name": view.other.display_name if view.other else None,
                    "other_accepted": view.other_decision == "accepted",
                },
            )
        return Page(200, html, "recorded", link.match_id)

    async def _form(self, scope: Scope, receive: Receive) -> dict[str, list[str]]:
        """The posted form, read up to ANSWER_MAX_BYTES (a larger body is refused unread)."""
        try:
            body = await read_body(scope, receive, self.settings.answer_max_bytes)
        except TooLarge:
            raise Refused("too_large", 413) from None
        except Disconnected:  # gone: a part of a form is no answer
            raise Refused("bad_form", 400, field="form") from None
        if media_type(scope) != FORM:
            raise Refused("bad_form", 400, field="form")
        try:
            return parse_qs(
                body.decode("utf-8"),  # percent-encoded by browsers, in UTF-8 (the page's)
                keep_blank_values=True,
                errors="strict",
                max_num_fields=MAX_FIELDS,
            )
        except ValueError:  # UnicodeDecodeError included
            raise Refused("bad_form", 400, field="form") from None

    def _record(self, event: CloudEvent, reader: Reader) -> OutboxRecord:
        """The event as the relay will publish it, signed when its tenant must sign (matching
        refuses such a tenant's unsigned events), and read back as the pipeline reads it."""
        record = OutboxRecord.of_event(event.type, reader.link.match_id, event)
        key = self.signing_keys.get(event.tenantid)
        if key is not None:
            record = replace(record, value=event.signed_bytes(key))
        try:
            decode_record(
                record.value,
                record.headers,
                topic=record.topic,
                key=record.key,
                max_bytes=self.settings.max_event_bytes,
                signing_keys=self.signing_keys,
                signature_max_age=timedelta(hours=self.settings.signature_max_age_hours),
            )
        except Rejected as rejected:  # the person's words, say (a NUL): refused, not published
            log.warning(
                "answer breaks the contract", match_id=event.data.match_id, code=rejected.code
            )
            raise reader.refused("bad_form", 400, field="form", back=_back(reader)) from None
        return record

    # --- what GET and POST both check ------------------------------------------------------------

    def _link(self, token: str) -> Link:
        try:
            return self.signer.read(token)
        except BadLink as bad:
            raise Refused(bad.code, 400 if bad.code == "forged" else 410) from None

    def _reader(self, token: str, link: Link, view: AnswerView, fallback: str) -> Reader:
        """Whom the link is for, in their language; refuses a match unknown here, or a person
        who is not its mentee or mentor."""
        locale = self.templates.locale_for(view.reader.languages) if view.reader else fallback
        if view.match is None:
            raise Refused("unknown_match", 404, locale, link.match_id)
        role = view.match.role_of(link.person_id)
        if role is None:
            raise Refused("other_person", 403, locale, link.match_id)
        return Reader(token, link, role, locale, view.reader)

    def _problem(self, refused: Refused, fallback: str) -> Page:
        context = {
            "outcome": None,
            "field": None,
            "back": None,
            "kind": None,
            "answer": None,
            "answered_at": None,
            "timezone": None,
            "again": False,
            **refused.context,
            "code": refused.code,
        }
        html = self.templates.page("problem", refused.locale or fallback, context)
        headers = ALLOW if refused.status == 405 else ()
        return Page(refused.status, html, refused.code, refused.match_id, headers)


def _still_open(reader: Reader, match: PageMatch) -> None:
    """A proposal is answered while it is open; feedback is given on a relationship that started
    (after its end too: closing feedback comes then)."""
    if reader.link.kind == "respond":
        expired = match.expires_at is not None and match.expires_at <= datetime.now(UTC)
        if match.state == "proposed" and not expired:
            return
        outcome = {"proposed": "expired", "confirmed": "confirmed"}.get(match.state)
        raise reader.refused("closed", 410, outcome=outcome or match.outcome)
    if not match.confirmed:
        raise reader.refused("not_confirmed", 410)


def _answered(reader: Reader, earlier: EarlierAnswer | None, status: int) -> Refused:
    """Already answered: GET shows the answer given (200), POST refuses another one (409)."""
    return reader.refused(
        "answered",
        status,
        kind=reader.link.kind,
        answer=earlier.answer if earlier else None,
        answered_at=earlier.answered_at if earlier else None,
        timezone=reader.timezone,
        again=status == 409,  # a second answer, refused (not the link opened again)
    )


def _read(reader: Reader, form: dict[str, list[str]]) -> Answer:
    """The answer the form gives, or the page naming the field it refuses."""
    link = reader.link
    try:
        if link.kind == "respond":
            choice = _field(form, "choice")
            if choice not in DECISIONS:
                raise FormProblem("choice")
            decision = DECISIONS[choice]
            reason = _text(form, "reason") if decision == "declined" else None
            data: Payload = MatchResponded(
                match_id=link.match_id, person_id=link.person_id, decision=decision, reason=reason
            )
            return Answer(data, decision)
        rating, learned = _field(form, "rating"), _field(form, "learned")
        if rating not in RATINGS:
            raise FormProblem("rating")
        if learned not in ("yes", "no"):
            raise FormProblem("learned")
        goals: list[GoalReached] = []
        for i, topic in enumerate(reader.goals):  # each optional
            reached = _field(form, f"goal_{i}")
            if reached and reached not in GOAL_ANSWERS:
                raise FormProblem("goal")
            if reached:
                goals.append(GoalReached(topic=topic, reached=reached))
        data = FeedbackGiven(
            match_id=link.match_id,
            person_id=link.person_id,
            kind="closing" if link.kind == "closing" else "checkin",
            rating=int(rating),
            goals=goals or None,
            learned=learned == "yes",
            comment=_text(form, "comment"),
        )
        return Answer(data, rating)
    except FormProblem as problem:
        raise reader.refused("bad_form", 400, field=str(problem), back=_back(reader)) from None
    except ValidationError:
        raise reader.refused("bad_form", 400, field="form", back=_back(reader)) from None


def _field(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name, [])
    if len(values) > 1:
        raise FormProblem(name)
    return values[0] if values else ""


def _text(form: dict[str, list[str]], name: str) -> str | None:
    """Free text as typed (browsers send CRLF line ends), None when empty."""
    text = _field(form, name).replace("\r\n", "\n").strip()
    if len(text) > MAX_TEXT:
        raise FormProblem(name)
    return text or None


def _known(view: AnswerView) -> PageMatch:
    assert view.match is not None, "the reader was checked first"
    return view.match


def _key(link: Link) -> tuple[str, str, str, str]:
    return (link.tenant_id, link.match_id, link.person_id, link.action)


def _event_id(link: Link) -> str:
    """Stable: the same answer is always the same event, which consumers' inboxes drop twice."""
    return str(uuid.uuid5(_IDS, "|".join(_key(link))))


def _back(reader: Reader) -> str:
    """The form's own address (relative: the page is served at PATH behind any prefix)."""
    return "answer?" + urlencode({"t": reader.token})


def _accepted_languages(header: str) -> list[str]:
    """Accept-Language's languages, the most wanted first ("fr-CH, fr;q=0.9, en;q=0.8")."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if tag and tag != "*" and weight > 0:
            ranked.append((-weight, position, tag))
    return [tag for _, _, tag in sorted(ranked)]
