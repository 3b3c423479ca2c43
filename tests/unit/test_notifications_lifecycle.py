"""A relationship's life in notifications: who is asked or told what at each check-in, stall and
end, and how each of those emails reads in English and in French."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifications.domain import (
    CATEGORIES,
    Policy,
    deliveries_for,
    for_ending,
    for_feedback_request,
    for_stall,
    implies_confirmation,
)
from services.notifications.handlers import _match_rows
from services.notifications.rendering import Rendered, Templates
from shared.contract.envelope import CloudEvent
from shared.contract.events import (
    FeedbackRequested,
    MatchConfirmed,
    MatchEnded,
    MatchProposed,
    Payload,
    RelationshipStalled,
)

pytestmark = pytest.mark.unit

NOW = datetime(2030, 1, 1, tzinfo=UTC)
PARTIES = {"match_id": "m-1", "program_id": "p-1", "mentee_id": "alice", "mentor_id": "bob"}
NEW_KINDS = ("checkin-request", "stall-nudge", "closing-feedback-request", "ending-notice")


def asked(person: str, role: str, kind: str = "checkin", **extra: Any) -> FeedbackRequested:
    checkin = 1 if kind == "checkin" else None
    return FeedbackRequested(
        **PARTIES, person_id=person, role=role, kind=kind, checkin=checkin, **extra
    )


def ended(outcome: str = "ended_early", **extra: Any) -> MatchEnded:
    return MatchEnded(**PARTIES, outcome=outcome, **extra)


# --- planning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "role", "partner"), [("alice", "mentee", "bob"), ("bob", "mentor", "alice")]
)
def test_a_checkin_asks_the_person_named_and_names_the_other(
    person: str, role: str, partner: str
) -> None:
    [planned] = for_feedback_request(asked(person, role))
    assert (planned.kind, planned.recipient_id, planned.partner_id) == (
        "checkin-request",
        person,
        partner,
    )
    assert planned.match_id == "m-1" and planned.category == "feedback"
    assert planned.context == {"match_id": "m-1", "program_id": "p-1", "role": role, "checkin": 1}


def test_a_closing_request_carries_the_end_read_so_far() -> None:
    [completed] = for_feedback_request(asked("alice", "mentee", "closing"), "completed")
    assert completed.kind == "closing-feedback-request" and completed.partner_id == "bob"
    assert completed.context["outcome"] == "completed"
    [early] = for_feedback_request(asked("bob", "mentor", "closing"), "ended_early")
    assert early.context["outcome"] == "ended_early"
    [unknown] = for_feedback_request(asked("bob", "mentor", "closing"))  # match-ended not read
    assert unknown.context["outcome"] is None
    # a proposal's end is no relationship's: never worth a congratulation
    [odd] = for_feedback_request(asked("bob", "mentor", "closing"), "expired")
    assert odd.context["outcome"] is None


def test_a_closing_request_that_says_how_it_ended_needs_no_match_ended() -> None:
    [said] = for_feedback_request(asked("alice", "mentee", "closing", outcome="completed"))
    assert said.context["outcome"] == "completed"
    [early] = for_feedback_request(asked("bob", "mentor", "closing", outcome="ended_early"))
    assert early.context["outcome"] == "ended_early"


def test_the_mentee_is_promised_a_new_mentor_exactly_when_matching_says_so() -> None:
    for rematched in (True, False):
        end = ended(ended_by_role="program", reason="no_time", mentee_rematched=rematched)
        assert told(end)["alice"]["new_mentor"] is rematched
    kept = ended(ended_by="bob", ended_by_role="mentor", reason="other", mentee_rematched=False)
    assert told(kept)["alice"]["new_mentor"] is False


def test_nobody_outside_the_match_is_asked() -> None:
    assert for_feedback_request(asked("mallory", "mentee")) == []
    assert for_feedback_request(asked("bob", "mentee")) == []  # the mentor, asked as mentee


def test_a_stall_nudges_both_each_naming_the_other_in_whole_days() -> None:
    planned = for_stall(RelationshipStalled(**PARTIES, days_since_last_session=20.6))
    assert sorted((p.kind, p.recipient_id, p.partner_id, p.context["role"]) for p in planned) == [
        ("stall-nudge", "alice", "bob", "mentee"),
        ("stall-nudge", "bob", "alice", "mentor"),
    ]
    assert {p.context["quiet_days"] for p in planned} == {21}
    assert {p.category for p in planned} == {"nudges"}
    short = for_stall(RelationshipStalled(**PARTIES, days_since_last_session=0.01))
    assert {p.context["quiet_days"] for p in short} == {1}  # never "0 days"


def told(data: MatchEnded) -> dict[str, dict[str, Any]]:
    """recipient -> context of each "ending-notice" planned for this end."""
    planned = for_ending(data)
    assert {p.kind for p in planned} <= {"ending-notice"}
    assert all(p.partner_id == ("bob" if p.recipient_id == "alice" else "alice") for p in planned)
    return {p.recipient_id: p.context for p in planned}


def test_an_early_end_is_told_to_the_other_person_only() -> None:
    by_mentor = told(ended(ended_by="bob", ended_by_role="mentor", reason="no_time"))
    assert list(by_mentor) == ["alice"]
    assert by_mentor["alice"]["new_mentor"] is True  # the mentor left: a new one is proposed
    assert (by_mentor["alice"]["reason"], by_mentor["alice"]["ended_by_role"]) == (
        "no_time",
        "mentor",
    )

    by_mentee = told(ended(ended_by="alice", ended_by_role="mentee", reason="not_a_fit"))
    assert list(by_mentee) == ["bob"]
    assert by_mentee["bob"]["new_mentor"] is False  # a mentor is never promised a mentor

    # an older publisher naming only the person: their role is found from the match
    assert list(told(ended(ended_by="alice", reason="other"))) == ["bob"]


@pytest.mark.parametrize(
    ("reason", "new_mentor"), [("not_a_fit", True), ("no_time", False), ("other", False)]
)
def test_an_end_by_the_program_is_told_to_both(reason: str, new_mentor: bool) -> None:
    both = told(ended(ended_by_role="program", reason=reason))
    assert sorted(both) == ["alice", "bob"]
    assert both["alice"]["new_mentor"] is new_mentor and both["bob"]["new_mentor"] is False
    assert {c["role"] for c in both.values()} == {"mentee", "mentor"}


def test_only_an_early_end_tells_and_proposals_keep_their_notice() -> None:
    assert for_ending(ended("completed", reason="goals_reached", relationship_days=90)) == []
    assert for_ending(ended("cancelled", ended_by="bob")) == []
    assert [(p.kind, p.recipient_id) for p in for_ending(ended("declined", ended_by="bob"))] == [
        ("next-proposal", "alice")
    ]


def test_each_person_asked_gets_a_delivery_of_their_own_and_a_replay_the_same_ids() -> None:
    to_mentee = CloudEvent.new(
        "feedback-requested", "t", "acme", asked("alice", "mentee"), id="e-1"
    )
    to_mentor = CloudEvent.new("feedback-requested", "t", "acme", asked("bob", "mentor"), id="e-2")
    rows = [
        row
        for event in (to_mentee, to_mentor, to_mentee)  # the first one redelivered
        for row in deliveries_for(event, for_feedback_request(event.data), ["email"], Policy(), NOW)
    ]
    assert rows[0].id == rows[2].id != rows[1].id
    assert {r.planned.recipient_id for r in rows} == {"alice", "bob"}


def event(type_: str, data: Payload) -> CloudEvent:
    return CloudEvent.new(type_, "test", "acme", data)


def test_relationship_events_say_the_match_was_confirmed() -> None:
    proposal = MatchProposed(**PARTIES, score=0.5, explanation=[], expires_at=NOW)
    confirmation = MatchConfirmed(**PARTIES, confirmed_at=NOW)
    stall = RelationshipStalled(**PARTIES, days_since_last_session=30)
    events = {
        "proposed": event("match-proposed", proposal),
        "confirmed": event("match-confirmed", confirmation),
        "checkin": event("feedback-requested", asked("alice", "mentee")),
        "stalled": event("relationship-stalled", stall),
        "completed": event("match-ended", ended("completed")),
        "ended_early": event("match-ended", ended(ended_by_role="program", reason="other")),
        "declined": event("match-ended", ended("declined")),
        "expired": event("match-ended", ended("expired")),
        "cancelled": event("match-ended", ended("cancelled")),
    }
    says = {name: implies_confirmation(e) for name, e in events.items()}
    assert says == {
        "proposed": False,
        "confirmed": True,
        "checkin": True,
        "stalled": True,
        "completed": True,
        "ended_early": True,
        "declined": False,
        "expired": False,
        "cancelled": False,  # a proposal or a relationship: cannot tell
    }
    rows = {name: row for name, row in zip(events, _match_rows(list(events.values())), strict=True)}
    assert (rows["checkin"].state, rows["checkin"].confirmed) == ("confirmed", True)
    assert (rows["stalled"].state, rows["stalled"].confirmed) == ("confirmed", True)
    assert (rows["completed"].state, rows["completed"].outcome) == ("ended", "completed")
    assert (rows["expired"].confirmed, rows["checkin"].outcome) == (False, None)
    assert {r.mentee_id for r in rows.values()} == {"alice"}


# --- rendering -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


FORM = "https://mentoring.example.org/answer?t=token"
URL = re.compile(r"https?://\S+")


def context(kind: str, role: str = "mentee", **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "recipient": {"name": "Ada"},
        "partner": {"name": "Grace", "email": "grace@example.com"},
        "timezone": "Europe/Paris",
        "match_id": "m-1",
        "program_id": "p-1",
        "role": role,
        "checkin": 1,
        "quiet_days": 23,
        "outcome": "ended_early",
        "reason": "not_a_fit",
        "ended_by_role": "mentor",
        "new_mentor": role == "mentee",
        "links": {"feedback": FORM},
        "feedback_link_days": 30,
    }
    return {**values, **extra}


def variants() -> list[dict[str, Any]]:
    """Every branch the new templates have: both roles, with and without the partner's
    contact, each end and each reason."""
    found = []
    for role in ("mentee", "mentor"):
        for partner in ({"name": "Grace", "email": "grace@example.com"}, None):
            for outcome in ("completed", "ended_early", None):
                for reason in ("goals_reached", "no_time", "not_a_fit", "other", None):
                    for by in ("mentor", "mentee", "program"):
                        found.append(
                            context(
                                "any",
                                role,
                                partner=partner,
                                outcome=outcome,
                                reason=reason,
                                ended_by_role=by,
                                quiet_days=1 if reason == "other" else 23,
                            )
                        )
    return found


def words(rendered: Rendered) -> list[str]:
    html = re.sub(r"<[^>]+>", " ", rendered.html)
    text = URL.sub(" ", f"{rendered.subject} {rendered.text} {html}")
    return re.findall(r"[a-zà-ÿœæ']+", text.lower())


ENGLISH = frozenset(
    "the an your you and with to of is are have has will we please thank thanks hello how "
    "what which did learned session sessions mentee mentoring feedback goals goal rating "
    "relationship program app ended soon new".split()
)
FRENCH = frozenset(
    "vous votre vos bonjour merci avec séance mentorat nous les des une objectifs".split()
)


def test_every_new_kind_is_in_a_category_and_the_categories_are_the_documented_ones() -> None:
    assert {CATEGORIES[k] for k in NEW_KINDS} == {"feedback", "nudges", "relationship"}
    assert set(CATEGORIES.values()) == {
        "proposals",
        "reminders",
        "introductions",
        "feedback",
        "nudges",
        "relationship",
    }


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_french_renderings_hold_no_english_and_english_ones_no_french(
    templates: Templates, kind: str
) -> None:
    for values in variants():
        french = templates.render(kind, "fr", values)
        english = templates.render(kind, "en", values)
        assert not ENGLISH & set(words(french)), (french.subject, french.text)
        assert not FRENCH & set(words(english)), (english.subject, english.text)
        # French typography: a space before ? ! : ; (the subject and the plain text)
        for line in (french.subject, *URL.sub("", french.text).splitlines()):
            assert not re.search(r"[^\s\u00a0\u202f][?!:;]", line), line
            assert "  " not in line.strip(), line
        assert french.subject and "\n" not in french.subject and "Ada" in french.text


@pytest.mark.parametrize("locale", ["en", "fr"])
@pytest.mark.parametrize("kind", NEW_KINDS)
def test_each_email_greets_the_reader_and_names_the_partner(
    templates: Templates, locale: str, kind: str
) -> None:
    rendered = templates.render(kind, locale, context(kind))
    assert "Grace" in rendered.subject and "Grace" in rendered.text
    assert "Grace" in rendered.html
    assert f'lang="{locale}"' in rendered.html
    greeting = {"en": "Hello Ada,", "fr": "Bonjour Ada,"}[locale]
    assert rendered.text.startswith(greeting) and greeting in rendered.html
    alone = templates.render(kind, locale, context(kind, partner=None))
    assert "Grace" not in alone.subject + alone.text + alone.html
    assert {"en": "your mentor", "fr": "votre mentor"}[locale] in alone.text.lower()


QUESTIONS = {
    "checkin-request": {
        "en": ["How is it going so far?", "from 1 to 5", "Have you learned something from Grace?"],
        "fr": [
            "Comment cela se passe-t-il jusqu'ici ?",
            "de 1 à 5",
            "Avez-vous appris quelque chose auprès de Grace ?",
        ],
    },
    "closing-feedback-request": {
        "en": ["How did it go overall?", "from 1 to 5", "Did you learn something from Grace?"],
        "fr": [
            "Comment ce mentorat s'est-il déroulé dans l'ensemble ?",
            "de 1 à 5",
            "Avez-vous appris quelque chose auprès de Grace ?",
        ],
    },
}
GOALS = {
    "checkin-request": {
        "en": "How far have you come with each of your goals?",
        "fr": "Où en êtes-vous de chacun de vos objectifs ?",
    },
    "closing-feedback-request": {
        "en": "Which of your goals did you reach, fully or in part?",
        "fr": "Quels objectifs avez-vous atteints, entièrement ou en partie ?",
    },
}
APP = {"en": "mentoring app", "fr": "application de mentorat"}  # there is none: a link instead
FORM_LINE = {"en": f"Open the form: {FORM}", "fr": f"Ouvrir le formulaire : {FORM}"}
VALID = {"en": "This link works for 30 days.", "fr": "Ce lien reste valable 30 jours."}


@pytest.mark.parametrize("locale", ["en", "fr"])
@pytest.mark.parametrize("kind", sorted(QUESTIONS))
def test_feedback_requests_say_what_is_asked_and_only_the_mentee_is_asked_about_goals(
    templates: Templates, locale: str, kind: str
) -> None:
    mentee = templates.render(kind, locale, context(kind, "mentee"))
    mentor = templates.render(kind, locale, context(kind, "mentor"))
    for rendered in (mentee, mentor):
        assert APP[locale] not in rendered.text + rendered.html
        assert FORM_LINE[locale] in rendered.text and VALID[locale] in rendered.text
        assert f'href="{FORM}"' in rendered.html and VALID[locale] in rendered.html
        for question in QUESTIONS[kind][locale]:
            assert question in rendered.text and question in rendered.html
    assert GOALS[kind][locale] in mentee.text and GOALS[kind][locale] in mentee.html
    assert GOALS[kind][locale] not in mentor.text + mentor.html


@pytest.mark.parametrize(
    ("locale", "cheer"), [("en", "Congratulations!"), ("fr", "Félicitations !")]
)
def test_the_closing_request_congratulates_a_completed_relationship_only(
    templates: Templates, locale: str, cheer: str
) -> None:
    kind = "closing-feedback-request"
    completed = templates.render(kind, locale, context(kind, outcome="completed"))
    assert completed.subject.startswith(cheer)
    assert cheer.lower()[:-1].strip() in completed.text.lower()
    for outcome in ("ended_early", None):
        neutral = templates.render(kind, locale, context(kind, outcome=outcome))
        assert cheer.lower()[:-1].strip() not in (neutral.subject + neutral.text).lower()


SUBJECTS = {
    ("checkin-request", "en"): "How is your mentoring with Grace going?",
    ("checkin-request", "fr"): "Comment se passe votre mentorat avec Grace ?",
    ("stall-nudge", "en"): "Time for your next session with Grace?",
    ("stall-nudge", "fr"): "Et si vous organisiez votre prochaine séance avec Grace ?",
    ("closing-feedback-request", "en"): "How did your mentoring with Grace go?",
    ("closing-feedback-request", "fr"): "Comment s'est passé votre mentorat avec Grace ?",
    ("ending-notice", "en"): "Your mentoring relationship with Grace has ended",
    ("ending-notice", "fr"): "Votre relation de mentorat avec Grace a pris fin",
}


@pytest.mark.parametrize(("kind", "locale"), sorted(SUBJECTS))
def test_subjects(templates: Templates, kind: str, locale: str) -> None:
    assert templates.render(kind, locale, context(kind)).subject == SUBJECTS[(kind, locale)]


@pytest.mark.parametrize(
    ("locale", "days", "expected"),
    [
        ("en", 23, "You have not had a session with Grace for 23 days."),
        ("en", 1, "You have not had a session with Grace for 1 day."),
        ("fr", 23, "Vous n'avez pas eu de séance avec Grace depuis 23 jours."),
        ("fr", 1, "Vous n'avez pas eu de séance avec Grace depuis 1 jour."),
    ],
)
def test_the_nudge_counts_the_quiet_days_and_gives_the_partners_address(
    templates: Templates, locale: str, days: int, expected: str
) -> None:
    rendered = templates.render("stall-nudge", locale, context("stall-nudge", quiet_days=days))
    assert expected in rendered.text
    assert "grace@example.com" in rendered.text
    assert 'href="mailto:grace@example.com"' in rendered.html


NEW_MENTOR = {
    "en": "We will propose a new mentor to you soon.",
    "fr": "Nous vous proposerons bientôt un nouveau mentor.",
}
CLOSING_FOLLOWS = {
    "en": "You will soon receive a request for closing feedback",
    "fr": "Vous recevrez bientôt une demande de bilan",
}
WHY = {
    ("en", "no_time"): "There is not enough time to keep it going at the moment",
    ("en", "not_a_fit"): "That happens, and it is nobody's fault.",
    ("fr", "no_time"): "Le temps manque pour la poursuivre en ce moment",
    ("fr", "not_a_fit"): "Cela arrive, et ce n'est la faute de personne.",
}


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_the_end_is_told_kindly_with_what_comes_next(templates: Templates, locale: str) -> None:
    kind = "ending-notice"
    by_mentor = templates.render(kind, locale, context(kind, reason="not_a_fit"))
    assert CLOSING_FOLLOWS[locale] in by_mentor.text and CLOSING_FOLLOWS[locale] in by_mentor.html
    assert NEW_MENTOR[locale] in by_mentor.text and NEW_MENTOR[locale] in by_mentor.html
    assert WHY[(locale, "not_a_fit")] in by_mentor.text
    assert by_mentor.text.splitlines()[2].startswith("Grace ")  # who ended it, by name

    to_mentor = templates.render(
        kind,
        locale,
        context(kind, "mentor", reason="no_time", ended_by_role="program", new_mentor=False),
    )
    assert NEW_MENTOR[locale] not in to_mentor.text + to_mentor.html
    assert WHY[(locale, "no_time")] in to_mentor.text
    assert {"en": "program's coordinators", "fr": "coordinateurs du programme"}[locale] in (
        to_mentor.text
    )
    assert CLOSING_FOLLOWS[locale] in to_mentor.text


def test_new_kinds_escape_names_in_html_and_keep_them_in_text(templates: Templates) -> None:
    injected = "<b>Eve</b>"
    for kind in NEW_KINDS:
        for locale in ("en", "fr"):
            values = context(kind, partner={"name": injected, "email": "eve@example.com"})
            rendered = templates.render(kind, locale, values)
            assert injected not in rendered.html and "&lt;b&gt;Eve&lt;/b&gt;" in rendered.html
            assert injected in rendered.text
