"""The answer page (services/notifications/pages.py) against the real PostgreSQL and Kafka: the
notifications service runs in-process (`build(settings)`, `app.start()`), the test is the browser
(httpx through the ASGI app), and what the page publishes is read back from Kafka with a fresh
consumer.

Matches are given either as notifications learns them (enrolment-updated and match-proposed
published to Kafka, read by the service) or as rows written straight into its tables, for states
events would take long to reach (a match ended, confirmed). Every test has its own tenant; the
delivery worker serves none of them, so the deliveries the events plan stay pending to be seen.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest
from faststream.asgi import AsgiFastStream
from pydantic import SecretStr

from services.notifications.entrypoint import build
from services.notifications.links import BadLink, Link, LinkSigner
from services.notifications.pages import PATH, AnswerPage
from services.notifications.settings import NotificationSettings
from shared.contract.signature import is_signed_by
from shared.local.infra import Endpoints
from shared.runtime.http import Documented
from shared.runtime.settings import KafkaSettings
from tests.support import (
    TopicReader,
    cloud_event,
    fresh_group,
    of_tenant,
    pool_fixture,
    publish_raw,
    wait_for,
)

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
OLD_KEY, NEW_KEY = f"old-link-key-{RUN}", f"new-link-key-{RUN}"
SIGNED = f"answers-{RUN}-signed"  # a tenant whose events must be signed (INGRESS_SIGNING_KEYS)
TENANT_KEY = f"tenant-key-{RUN}"
MAX_BYTES = 4096
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
EXPLANATION = [
    {
        "criterion": "topic_fit",
        "weight": 0.5,
        "contribution": 0.4,
        "reason": "Covers your goal python",
        "facts": {
            "goals": [
                {"topic": "python", "priority": 1, "covered": True},
                {"topic": "sql", "priority": 2, "covered": False},
            ],
            "covered": ["python"],
            "not_covered": ["sql"],
        },
    },
    {
        "criterion": "languages",
        "weight": 0.2,
        "contribution": 0.2,
        "reason": "You both speak French",
        "facts": {"shared": ["fr", "en"]},
    },
]


# --- fixtures ----------------------------------------------------------------------------------


@pool_fixture("module", max_size=3, search_path="notifications")
def db(infra: Endpoints) -> str:
    """This module's own pool: notifications' schema first (overrides the session `db`)."""
    return infra.database_url


@pytest.fixture(scope="module", autouse=True)
async def clean_up(db: asyncpg.Pool) -> AsyncIterator[None]:
    """This module's tenants leave no rows behind."""
    yield
    for table in ("answers", "responses", "deliveries", "matches", "contacts", "inbox"):
        await db.execute(f"DELETE FROM {table} WHERE tenant_id LIKE $1", f"answers-{RUN}-%")


@pytest.fixture(scope="module")
async def app(infra: Endpoints, db: asyncpg.Pool) -> AsyncIterator[AsgiFastStream]:
    settings = NotificationSettings(
        kafka=KafkaSettings(bootstrap_servers=infra.bootstrap_servers),
        database_url=infra.database_url,
        consumer_group=await fresh_group(infra.bootstrap_servers, "notifications", "answer-test"),
        delivery_tenants=[f"answers-{RUN}-nobody"],  # nothing is sent: deliveries stay pending
        link_signing_keys=[SecretStr(OLD_KEY), SecretStr(NEW_KEY)],  # rotating: old, then new
        ingress_signing_keys={SIGNED: SecretStr(TENANT_KEY)},
        answer_max_bytes=MAX_BYTES,
        public_base_url="http://testserver",
    )
    service = build(settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def browser(app: AsgiFastStream) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def match_responded(infra: Endpoints) -> AsyncIterator[TopicReader]:
    async with TopicReader(infra.bootstrap_servers, "match-responded") as reader:
        yield reader


@pytest.fixture
async def feedback_given(infra: Endpoints) -> AsyncIterator[TopicReader]:
    async with TopicReader(infra.bootstrap_servers, "feedback-given") as reader:
        yield reader


# --- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    tenant: str
    match_id: str
    mentee: str
    mentor: str

    def link(self, person: str, action: str = "respond", expires_in: float = 3600) -> Link:
        expires = datetime.now(UTC) + timedelta(seconds=expires_in)
        return Link(self.tenant, self.match_id, person, action, expires)


def new_match(name: str, tenant: str | None = None) -> Match:
    hex_ = uuid.uuid4().hex[:8]
    return Match(tenant or f"answers-{RUN}-{name}", f"m-{hex_}", f"mentee-{hex_}", f"mentor-{hex_}")


def token(link: Link, key: str = NEW_KEY) -> str:
    return LinkSigner([key]).token(link)


def person_data(m: Match, role: str, name: str, languages: Sequence[str]) -> dict[str, Any]:
    person = m.mentee if role == "mentee" else m.mentor
    data: dict[str, Any] = {
        "program_id": "prog-1",
        "person_id": person,
        "role": role,
        "display_name": name,
        "email": f"{person}@example.com",
        "languages": list(languages),
        "timezone": "Europe/Paris",
        "registered_at": datetime.now(UTC).isoformat(),
    }
    if role == "mentor":
        data |= {"expertise": [{"topic": "python", "level": 5}], "capacity": 2}
    else:
        data |= {"goals": [{"topic": "python", "priority": 1}, {"topic": "sql", "priority": 2}]}
    return data


async def proposed_through_kafka(infra: Endpoints, db: asyncpg.Pool, m: Match) -> None:
    """The match as notifications learns it: both enrolments, then the proposal, read by the
    service; returns once it planned the proposal and the reminders."""
    records = []
    for role, name in (("mentee", "Ada Lovelace"), ("mentor", "Grace Hopper")):
        event = cloud_event("enrolment-updated", m.tenant, person_data(m, role, name, ["en"]))
        records.append(("enrolment-updated", f"{m.tenant}:prog-1".encode(), json.dumps(event)))
    proposal = {
        "match_id": m.match_id,
        "program_id": "prog-1",
        "mentee_id": m.mentee,
        "mentor_id": m.mentor,
        "score": 0.8,
        "explanation": EXPLANATION,
        "expires_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
    }
    event = cloud_event("match-proposed", m.tenant, proposal, source="mentornet/matching")
    records.append(("match-proposed", m.match_id.encode(), json.dumps(event)))
    await publish_raw(infra.bootstrap_servers, [(t, k, v.encode()) for t, k, v in records])
    await wait_for(
        db,
        """SELECT count(*) = 2 FROM deliveries WHERE tenant_id = $1 AND match_id = $2
             AND kind = 'match-reminder' AND state = 'pending'""",
        m.tenant,
        m.match_id,
        timeout=30,
    )
    await wait_for(
        db,
        "SELECT count(*) = 2 FROM contacts WHERE tenant_id = $1 AND display_name IS NOT NULL",
        m.tenant,
    )


async def given(
    db: asyncpg.Pool,
    m: Match,
    *,
    state: str = "proposed",
    confirmed: bool = False,
    outcome: str | None = None,
    expires_in: timedelta = timedelta(days=3),
    languages: tuple[str, ...] = ("en",),
    mentor_name: str = "Grace Hopper",
) -> None:
    """The match and both contacts written straight into notifications' tables."""
    for role, name in (("mentee", "Ada Lovelace"), ("mentor", mentor_name)):
        p = person_data(m, role, name, languages)
        await db.execute(
            """INSERT INTO contacts (tenant_id, person_id, role, display_name, email, languages,
                                     timezone, registered_at, expertise, goals)
               VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8::jsonb, $9::jsonb)""",
            m.tenant,
            p["person_id"],
            role,
            name,
            p["email"],
            list(languages),
            p["timezone"],
            json.dumps(p.get("expertise", [])),
            json.dumps(p.get("goals", [])),
        )
    await db.execute(
        """INSERT INTO matches (tenant_id, match_id, program_id, mentee_id, mentor_id, expires_at,
                                state, confirmed, outcome, explanation)
           VALUES ($1, $2, 'prog-1', $3, $4, $5, $6, $7, $8, $9::jsonb)""",
        m.tenant,
        m.match_id,
        m.mentee,
        m.mentor,
        datetime.now(UTC) + expires_in,
        state,
        confirmed,
        outcome,
        json.dumps(EXPLANATION),
    )


async def post(browser: httpx.AsyncClient, form: dict[str, Any], **headers: str) -> httpx.Response:
    return await browser.post(PATH, data=form, headers=headers)


async def stored(db: asyncpg.Pool, m: Match) -> tuple[int, int]:
    """(answers, responses) rows of this match."""
    answers = await db.fetchval(
        "SELECT count(*) FROM answers WHERE tenant_id = $1 AND match_id = $2", m.tenant, m.match_id
    )
    responses = await db.fetchval(
        "SELECT count(*) FROM responses WHERE tenant_id = $1 AND match_id = $2",
        m.tenant,
        m.match_id,
    )
    return answers, responses


async def reminders(db: asyncpg.Pool, m: Match) -> dict[str, str]:
    rows = await db.fetch(
        """SELECT recipient_id, state FROM deliveries
           WHERE tenant_id = $1 AND match_id = $2 AND kind = 'match-reminder'""",
        m.tenant,
        m.match_id,
    )
    return {r["recipient_id"]: r["state"] for r in rows}


def data_of(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value)["data"] for r in records]


def visible(response: httpx.Response) -> str:
    """The page's text, tags dropped and spaces folded, to look for sentences in."""
    text = re.sub(r"<[^>]+>", " ", response.text).replace("&nbsp;", " ")
    return re.sub(r"\s+", " ", text)


def assert_secure(response: httpx.Response) -> None:
    h = response.headers
    assert h["content-security-policy"] == CSP
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-store"
    assert h["x-content-type-options"] == "nosniff"
    assert h["content-type"] == "text/html; charset=utf-8"
    assert "<script" not in response.text


# --- proposals ---------------------------------------------------------------------------------


async def test_the_proposal_page_shows_it_and_changes_nothing(
    infra: Endpoints,
    db: asyncpg.Pool,
    browser: httpx.AsyncClient,
    match_responded: TopicReader,
) -> None:
    m = new_match("show")
    await proposed_through_kafka(infra, db, m)
    t = token(m.link(m.mentee))

    for query in ({"t": t, "choice": "accept"}, {"t": t}):  # twice, as a mail scanner would
        response = await browser.get(PATH, params=query)
        assert response.status_code == 200, response.text
        assert_secure(response)
        page, text = response.text, visible(response)
        assert '<html lang="en">' in page
        assert "We propose Grace Hopper as your mentor." in text
        assert "Covers 1 of your 2 goals: python" in text  # the reasons, written to the mentee
        assert "python (recognised expert)" in text  # the mentor's profile
        assert "Please answer by" in text
        assert f'<input type="hidden" name="t" value="{t}">' in page
        assert '<form method="post" action="answer"' in page
        assert '<button type="submit" name="choice" value="accept"' in page
        assert '<button type="submit" name="choice" value="decline"' in page
        assert '<label class="field" for="reason">' in page and 'id="reason"' in page
        assert "@example.com" not in page  # no address before both accept

    assert await stored(db, m) == (0, 0)
    assert await reminders(db, m) == {m.mentee: "pending", m.mentor: "pending"}
    assert not await match_responded.drain(2.0, of_tenant(m.tenant))


async def test_accepting_publishes_one_match_responded_once(
    infra: Endpoints,
    db: asyncpg.Pool,
    browser: httpx.AsyncClient,
    match_responded: TopicReader,
) -> None:
    m = new_match("accept")
    await proposed_through_kafka(infra, db, m)
    t = token(m.link(m.mentee))

    response = await post(browser, {"t": t, "choice": "accept", "reason": "ignored"})
    assert response.status_code == 200, response.text
    assert_secure(response)
    text = visible(response)
    assert "Thank you, your answer has been recorded" in text
    assert "When Grace Hopper accepts too, you'll both get an email introducing you" in text
    # committed with the answer, before the page said thank you (the service reads its own
    # match-responded later, which would cancel the reminder too, but only after a while)
    assert await reminders(db, m) == {m.mentee: "cancelled", m.mentor: "pending"}

    keep = of_tenant(m.tenant)
    published = await match_responded.collect(lambda found: len(found) >= 1, keep=keep)
    published += await match_responded.drain(2.0, keep)
    assert data_of(published) == [
        {"match_id": m.match_id, "person_id": m.mentee, "decision": "accepted"}
    ]
    (record,) = published
    event = json.loads(record.value)
    assert record.key == m.match_id.encode()
    assert event["type"] == "match-responded" and event["tenantid"] == m.tenant
    assert event["source"] == "mentornet/notifications/answer-page"
    assert "signature" not in event  # this tenant does not sign

    row = await db.fetchrow(
        "SELECT answer, event_id FROM answers WHERE tenant_id = $1 AND match_id = $2",
        m.tenant,
        m.match_id,
    )
    assert dict(row) == {"answer": "accepted", "event_id": event["id"]}
    decision = await db.fetchval(
        "SELECT decision FROM responses WHERE tenant_id = $1 AND person_id = $2",
        m.tenant,
        m.mentee,
    )
    assert decision == "accepted"

    # the same form again (a double click, the back button): refused, nothing published
    again = await post(browser, {"t": t, "choice": "accept"})
    assert again.status_code == 409
    assert_secure(again)
    assert "You accepted this proposal on" in visible(again)
    assert "this second answer was not recorded" in visible(again)
    assert not await match_responded.drain(2.0, keep)
    assert await stored(db, m) == (1, 1)

    # and the link now shows the answer given, with nothing to press
    shown = await browser.get(PATH, params={"t": t})
    assert shown.status_code == 200
    assert "You accepted this proposal on" in visible(shown)
    assert 'name="choice"' not in shown.text


async def test_answers_sent_at_once_are_kept_once(
    db: asyncpg.Pool, browser: httpx.AsyncClient, match_responded: TopicReader
) -> None:
    m = new_match("at-once")
    await given(db, m)
    form = {"t": token(m.link(m.mentor)), "choice": "accept"}
    responses = await asyncio.gather(*(post(browser, form) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
    keep = of_tenant(m.tenant)
    published = await match_responded.collect(lambda found: len(found) >= 1, keep=keep)
    published += await match_responded.drain(2.0, keep)
    assert len(published) == 1
    assert await stored(db, m) == (1, 1)


async def test_declining_with_a_reason(
    db: asyncpg.Pool, browser: httpx.AsyncClient, match_responded: TopicReader
) -> None:
    m = new_match("decline")
    await given(db, m)
    t = token(m.link(m.mentor))

    shown = await browser.get(PATH, params={"t": t, "choice": "decline"})
    assert shown.status_code == 200
    assert "A mentee would like to learn from you" in visible(shown)
    assert "Wants to learn: python and sql" in visible(shown)  # the reasons, to the mentor
    assert re.search(r'<textarea id="reason" name="reason"[^>]* autofocus>', shown.text)

    reason = "Not this quarter:\r\ntoo busy <b>really</b>"
    response = await post(browser, {"t": t, "choice": "decline", "reason": reason})
    assert response.status_code == 200, response.text
    assert "You declined the proposal to work with Ada Lovelace" in visible(response)

    keep = of_tenant(m.tenant)
    published = await match_responded.collect(lambda found: len(found) >= 1, keep=keep)
    assert data_of(published) == [
        {
            "match_id": m.match_id,
            "person_id": m.mentor,
            "decision": "declined",
            "reason": "Not this quarter:\ntoo busy <b>really</b>",
        }
    ]
    answer = await db.fetchval("SELECT answer FROM answers WHERE match_id = $1", m.match_id)
    assert answer == "declined"  # the reason itself is only in the event


async def test_a_signing_tenant_gets_signed_events(
    db: asyncpg.Pool, browser: httpx.AsyncClient, match_responded: TopicReader
) -> None:
    m = new_match("signed", tenant=SIGNED)
    await given(db, m)
    response = await post(browser, {"t": token(m.link(m.mentee)), "choice": "accept"})
    assert response.status_code == 200, response.text
    (record,) = await match_responded.collect(lambda found: len(found) >= 1, keep=of_tenant(SIGNED))
    assert is_signed_by(json.loads(record.value), TENANT_KEY.encode())


async def test_names_from_other_systems_stay_text(
    db: asyncpg.Pool, browser: httpx.AsyncClient
) -> None:
    m = new_match("markup")
    await given(db, m, mentor_name='Grace <script>alert("x")</script>')
    shown = await browser.get(PATH, params={"t": token(m.link(m.mentee))})
    assert shown.status_code == 200
    assert_secure(shown)  # no script on the page
    assert "Grace &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in shown.text


async def test_a_french_reader_reads_french(db: asyncpg.Pool, browser: httpx.AsyncClient) -> None:
    m = new_match("french")
    await given(db, m, languages=("fr-CA", "en"))
    t = token(m.link(m.mentee))

    shown = await browser.get(PATH, params={"t": t})
    assert shown.status_code == 200
    assert '<html lang="fr">' in shown.text
    text = visible(shown)
    assert "Nous vous proposons Grace Hopper comme mentor." in text
    assert "Couvre 1 de vos 2 objectifs" in text
    assert ">Accepter</button>" in shown.text and ">Refuser</button>" in shown.text
    assert "Si vous refusez, pourquoi ? (facultatif)" in text

    answered = await post(browser, {"t": t, "choice": "accept"})
    assert answered.status_code == 200
    assert '<html lang="fr">' in answered.text
    assert "Merci, votre réponse a bien été enregistrée" in visible(answered)

    # no person known (a bad link): the browser's language decides
    bad = await browser.get(
        PATH, params={"t": "nope"}, headers={"Accept-Language": "fr-FR,en;q=0.5"}
    )
    assert bad.status_code == 400 and '<html lang="fr">' in bad.text
    assert "Ce lien ne fonctionne pas" in visible(bad)
    english = await browser.get(PATH, params={"t": "nope"}, headers={"Accept-Language": "de"})
    assert '<html lang="en">' in english.text


# --- what is refused ---------------------------------------------------------------------------


async def test_forged_links_are_refused(db: asyncpg.Pool, browser: httpx.AsyncClient) -> None:
    m = new_match("forged")
    await given(db, m)
    good = token(m.link(m.mentee))
    payload, _, signature = good.rpartition(".")
    altered = f"{payload}.{signature[:5]}{'B' if signature[5] == 'A' else 'A'}{signature[6:]}"
    other_person = token(m.link(m.mentor))  # a real token, its signature moved onto another
    grafted = f"{other_person.rpartition('.')[0]}.{signature}"
    unknown_key = token(m.link(m.mentee), key="a-key-nobody-configured")
    for forged in (altered, grafted, "garbage", "", unknown_key):
        shown = await browser.get(PATH, params={"t": forged})
        assert shown.status_code == 400, forged
        assert_secure(shown)
        assert "This link does not work" in visible(shown)
        posted = await post(browser, {"t": forged, "choice": "accept"})
        assert posted.status_code == 400, forged
    assert await stored(db, m) == (0, 0)


async def test_an_expired_link_is_gone(db: asyncpg.Pool, browser: httpx.AsyncClient) -> None:
    m = new_match("expired")
    await given(db, m)
    expired = token(m.link(m.mentee, expires_in=-1))
    shown = await browser.get(PATH, params={"t": expired})
    assert shown.status_code == 410
    assert "This link has expired" in visible(shown)
    posted = await post(browser, {"t": expired, "choice": "accept"})
    assert posted.status_code == 410
    assert await stored(db, m) == (0, 0)


async def test_someone_not_of_the_match_is_refused(
    db: asyncpg.Pool, browser: httpx.AsyncClient
) -> None:
    m = new_match("stranger")
    await given(db, m)
    stranger = token(m.link("someone-else"))
    shown = await browser.get(PATH, params={"t": stranger})
    assert shown.status_code == 403
    assert "This link is not for this match" in visible(shown)
    posted = await post(browser, {"t": stranger, "choice": "accept"})
    assert posted.status_code == 403
    assert await stored(db, m) == (0, 0)


async def test_an_unknown_match_is_not_found(db: asyncpg.Pool, browser: httpx.AsyncClient) -> None:
    m = new_match("unknown")  # never given
    t = token(m.link(m.mentee))
    assert (await browser.get(PATH, params={"t": t})).status_code == 404
    posted = await post(browser, {"t": t, "choice": "accept"})
    assert posted.status_code == 404
    assert "We cannot find this match" in visible(posted)
    assert await stored(db, m) == (0, 0)


@pytest.mark.parametrize(
    ("state", "outcome", "expires_in", "says"),
    [
        ("ended", "declined", timedelta(days=3), "This proposal was declined"),
        ("ended", "cancelled", timedelta(days=3), "This proposal was cancelled"),
        ("confirmed", None, timedelta(days=3), "This match has already been confirmed"),
        (
            "proposed",
            None,
            timedelta(seconds=-1),
            "The deadline to answer this proposal has passed",
        ),
    ],
)
async def test_a_proposal_no_longer_open_is_gone(
    db: asyncpg.Pool,
    browser: httpx.AsyncClient,
    state: str,
    outcome: str | None,
    expires_in: timedelta,
    says: str,
) -> None:
    m = new_match(f"closed-{state}")
    await given(
        db, m, state=state, confirmed=state == "confirmed", outcome=outcome, expires_in=expires_in
    )
    t = token(m.link(m.mentee))
    shown = await browser.get(PATH, params={"t": t})
    assert shown.status_code == 410
    assert says in visible(shown)
    posted = await post(browser, {"t": t, "choice": "accept"})
    assert posted.status_code == 410
    assert await stored(db, m) == (0, 0)


async def test_keys_rotate_without_breaking_links(
    app: AsgiFastStream, db: asyncpg.Pool, browser: httpx.AsyncClient
) -> None:
    m = new_match("rotation")
    await given(db, m)
    link = m.link(m.mentee)
    # a link sent before the new key was added still works ...
    old = token(link, key=OLD_KEY)
    assert (await browser.get(PATH, params={"t": old})).status_code == 200
    # ... and links made now are signed with the new key: readable once the old one is gone
    (route,) = [route for path, route in app.routes if path == PATH]
    page = route.app if isinstance(route, Documented) else route
    assert isinstance(page, AnswerPage)
    fresh = page.signer.token(link)
    assert LinkSigner([NEW_KEY]).read(fresh) == LinkSigner([OLD_KEY, NEW_KEY]).read(old)
    with pytest.raises(BadLink):
        LinkSigner([OLD_KEY]).read(fresh)
    posted = await post(browser, {"t": old, "choice": "accept"})
    assert posted.status_code == 200
    assert await stored(db, m) == (1, 1)


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"choice": "maybe"}, "Please choose Accept or Decline"),
        ({}, "Please choose Accept or Decline"),
        ({"choice": "decline", "reason": "x" * 2001}, "Your text is too long"),
        ({"choice": ["accept", "decline"]}, "Please choose Accept or Decline"),
        # no column can keep U+0000: the contract refuses it, so the page does, before publishing
        ({"choice": "decline", "reason": "a\x00b"}, "The form we received was incomplete"),
    ],
)
async def test_a_bad_form_stores_nothing(
    db: asyncpg.Pool,
    browser: httpx.AsyncClient,
    match_responded: TopicReader,
    form: dict[str, Any],
    says: str,
) -> None:
    m = new_match("bad-form")
    await given(db, m)
    t = token(m.link(m.mentee))
    response = await post(browser, {"t": t, **form})
    assert response.status_code == 400
    assert_secure(response)
    assert says in visible(response)
    assert f'href="answer?t={t}"' in response.text  # back to the form
    assert await stored(db, m) == (0, 0)
    assert not await match_responded.drain(1.0, of_tenant(m.tenant))


async def test_a_body_over_the_limit_is_refused_unread(
    db: asyncpg.Pool, browser: httpx.AsyncClient
) -> None:
    m = new_match("too-large")
    await given(db, m)
    form = {"t": token(m.link(m.mentee)), "choice": "decline", "reason": "x" * MAX_BYTES}
    declared = await post(browser, form)
    assert declared.status_code == 413
    assert_secure(declared)
    assert "Your answer is too long" in visible(declared)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        body = urlencode(form).encode()
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    streamed = await browser.post(
        PATH,
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert await stored(db, m) == (0, 0)


async def test_other_methods_are_not_allowed(browser: httpx.AsyncClient) -> None:
    response = await browser.put(PATH, content=b"")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert_secure(response)


# --- feedback ----------------------------------------------------------------------------------


async def test_checkin_feedback_becomes_feedback_given(
    db: asyncpg.Pool, browser: httpx.AsyncClient, feedback_given: TopicReader
) -> None:
    m = new_match("checkin")
    await given(db, m, state="confirmed", confirmed=True)
    t = token(m.link(m.mentor, "checkin:1"))

    shown = await browser.get(PATH, params={"t": t})
    assert shown.status_code == 200, shown.text
    page = shown.text
    assert "How is your mentoring with Ada Lovelace going?" in visible(shown)
    assert page.count('name="rating"') == 5 and "<legend>" in page
    assert '<label class="option" for="learned-yes">' in page
    assert 'name="goal_' not in page  # goals: the mentee's, at closing

    bad = await post(browser, {"t": t, "rating": "7", "learned": "yes"})
    assert bad.status_code == 400 and "Please choose a rating from 1 to 5" in visible(bad)
    assert await stored(db, m) == (0, 0)

    form = {"t": t, "rating": "4", "learned": "yes", "comment": "Going well"}
    response = await post(browser, form)
    assert response.status_code == 200, response.text
    assert "Thank you for your feedback" in visible(response)
    published = await feedback_given.collect(lambda f: len(f) >= 1, keep=of_tenant(m.tenant))
    assert data_of(published) == [
        {
            "match_id": m.match_id,
            "person_id": m.mentor,
            "kind": "checkin",
            "rating": 4,
            "learned": True,
            "comment": "Going well",
        }
    ]
    assert (await post(browser, form)).status_code == 409
    assert await stored(db, m) == (1, 0)  # feedback is no proposal answer


async def test_closing_feedback_by_the_mentee_reports_goals(
    db: asyncpg.Pool, browser: httpx.AsyncClient, feedback_given: TopicReader
) -> None:
    m = new_match("closing")
    await given(db, m, state="ended", confirmed=True, outcome="completed")  # after the end
    t = token(m.link(m.mentee, "closing"))

    shown = await browser.get(PATH, params={"t": t})
    assert shown.status_code == 200, shown.text
    assert "How did your mentoring with Grace Hopper go?" in visible(shown)
    assert "<legend>python</legend>" in shown.text and "<legend>sql</legend>" in shown.text

    form = {"t": t, "rating": "5", "learned": "no", "goal_0": "yes", "goal_1": "partly"}
    response = await post(browser, form)
    assert response.status_code == 200, response.text
    published = await feedback_given.collect(lambda f: len(f) >= 1, keep=of_tenant(m.tenant))
    assert data_of(published) == [
        {
            "match_id": m.match_id,
            "person_id": m.mentee,
            "kind": "closing",
            "rating": 5,
            "goals": [
                {"topic": "python", "reached": "yes"},
                {"topic": "sql", "reached": "partly"},
            ],
            "learned": False,
        }
    ]
    shown = await browser.get(PATH, params={"t": t})
    assert "You gave your feedback on" in visible(shown) and "rating of 5 out of 5" in visible(
        shown
    )


async def test_feedback_on_a_match_never_confirmed_is_gone(
    db: asyncpg.Pool, browser: httpx.AsyncClient
) -> None:
    m = new_match("unconfirmed")
    await given(db, m, state="ended", outcome="declined")
    t = token(m.link(m.mentee, "checkin:1"))
    shown = await browser.get(PATH, params={"t": t})
    assert shown.status_code == 410
    assert "This mentoring relationship did not start" in visible(shown)
    posted = await post(browser, {"t": t, "rating": "3", "learned": "yes"})
    assert posted.status_code == 410
    assert await stored(db, m) == (0, 0)
