"""No English in a French email: every kind rendered in French, in every variant that changes its
text (both roles, with and without the partner, each outcome and reason, reasons written from
facts for every criterion, a partner profile), and every French template's own text, hold no
common English word. Names and topics in the fixtures are French, so they trip nothing."""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifications import reading
from services.notifications.domain import CATEGORIES, NEEDS_PARTNER
from services.notifications.rendering import TEMPLATES_DIR, Rendered, Templates

pytestmark = pytest.mark.unit

# Common English words that are not French words too ("a", "on", "en", "as", "but", "or",
# "mentor", "contact", "expert", "expertise", "senior", "junior", "place", "service", "date",
# "message", "note", "minutes", "moment", "instant", "perspective" are French as well).
ENGLISH = frozenset(
    """
    the an and of to in at by for from with without about into than then
    i me my your yours you we our us they their them he she his her it its
    this that these those there here who whom whose what which when where why how if so
    is are was were be been being has have had do does did done will would shall should
    can could may might must not no yes please thank thanks hello hi dear regards welcome
    just only still already soon now currently again once also both all each every none
    some any more less most same different new next last first before after until over
    accept accepted decline declined answer answers reply respond mentee mentees mentoring
    goal goals topic topics hour hours day days week weeks time zone rated rating ratings
    cover covers covered speak speaks want wants learn learning level levels free
    department departments availability experience language languages reminder proposal
    proposed propose match matches session sessions feedback form link links works expires
    waiting meet introduction app program relationship together well ended completed found
    write plan email address fresh deadline open click below above
    """.split()
)
URL = re.compile(r"https?://\S+")
EMAIL = re.compile(r"\S+@\S+")
CLOCK = re.compile(r"\d{2}:\d{2}")

NOW = datetime(2030, 1, 15, 9, tzinfo=UTC)
AMELIE = {"name": "Amélie Dupont"}
JEROME = {"name": "Jérôme Lefèvre", "email": "jerome.lefevre@exemple.fr"}
LINKS = {
    "accept": "https://mentorat.exemple.fr/answer?t=jeton&choice=accept",
    "decline": "https://mentorat.exemple.fr/answer?t=jeton&choice=decline",
    "feedback": "https://mentorat.exemple.fr/answer?t=jeton",
}
TOPICS = ("négociation", "prise de parole", "comptabilité")


def fit(covered: int, through: str | None = None) -> dict[str, Any]:
    """The first `covered` goals covered, the first through the mentor's `through` topic."""
    goals = [
        {
            "topic": topic,
            "priority": min(i + 1, 3),
            "covered": i < covered,
            "through": through if i == 0 < covered else None,
        }
        for i, topic in enumerate(TOPICS)
    ]
    return {
        "goals": goals,
        "covered": [g["topic"] for g in goals if g["covered"]],
        "not_covered": [g["topic"] for g in goals if not g["covered"]],
    }


def explanation(variant: int) -> list[dict[str, Any]]:
    """Every criterion, with facts that take each sentence down another branch per variant."""
    facts = [
        {
            "topic_fit": fit(2, through="médiation"),
            "languages": {"shared": ["fr", "en"]},
            "timezone": {"hours_apart": 1.0},
            "seniority": {"gap": 3},
            "department": {"relation": "different"},
            "reputation": {"rating_mean": 4.57, "rating_count": 12, "provisional": False},
            "load": {"free_places": 1, "capacity": 2},
            "mutual_learning": {
                "shared": [{"topic": "tableur", "interest": "tableur"}],
                "not_wanted": [],
            },
        },
        {
            "topic_fit": fit(3),
            "languages": {"shared": ["fr"]},
            "timezone": {"hours_apart": 0.0},
            "seniority": {"gap": -1},
            "department": {"relation": "same"},
            "reputation": {"rating_mean": None, "rating_count": 0, "provisional": True},
            "load": {"free_places": 3, "capacity": 4},
            "mutual_learning": {
                "shared": [
                    {"topic": "tableur", "interest": "bureautique"},
                    {"topic": "dessin", "interest": "dessin"},
                ],
                "not_wanted": ["cuisine"],
            },
        },
        {
            "topic_fit": fit(0),
            "languages": {"shared": []},
            "timezone": {"hours_apart": 5.5},
            "seniority": {"gap": 0},
            "department": {"relation": "unknown"},
            "reputation": {"rating_mean": 5.0, "rating_count": 1, "provisional": True},
            "load": {"free_places": 0, "capacity": 1},
            "mutual_learning": {"shared": [], "not_wanted": ["cuisine"]},
        },
    ][variant]
    return [
        {"criterion": criterion, "contribution": 0.1, "reason": "English v1 sentence", "facts": f}
        for criterion, f in facts.items()
    ]


def partner_profile(role: str) -> dict[str, Any]:
    """The other side of `role`, as the claim query returns it."""
    return {
        "display_name": JEROME["name"],
        "role": "mentor" if role == "mentee" else "mentee",
        "languages": ["fr", "en", "es"],
        "timezone": "Europe/Paris",
        "expertise": [
            {"topic": t, "level": level} for t, level in zip(TOPICS, (5, 3, 1), strict=True)
        ]
        if role == "mentee"
        else [],
        "goals": [{"topic": t, "priority": p} for t, p in zip(TOPICS, (2, 1, 3), strict=True)]
        if role == "mentor"
        else [],
    }


def contexts() -> Iterator[dict[str, Any]]:
    """Every combination of what changes the text of some kind."""
    for role, partner, outcome, reason, ended_by, variant in itertools.product(
        ("mentee", "mentor"),
        (JEROME, None),
        ("completed", "ended_early", "declined", "expired", None),
        ("goals_reached", "no_time", "not_a_fit", "other", None),
        ("mentor", "mentee", "program"),
        (0, 1, 2),
    ):
        person = partner_profile(role) if partner else None
        yield {
            "recipient": AMELIE,
            "partner": partner,
            "timezone": "Europe/Paris",
            "role": role,
            "match_id": "m-1",
            "program_id": "p-1",
            "score": 0.8,
            "expires_at": "2030-01-18T12:00:00+00:00",
            "explanation": explanation(variant),
            "reasons": reading.reasons(explanation(variant), role, "fr"),
            "profile": reading.profile(person, "fr", NOW),
            "links": LINKS,
            "feedback_link_days": 1 if variant == 2 else 30,
            "outcome": outcome,
            "reason": reason,
            "ended_by_role": ended_by,
            "new_mentor": role == "mentee" and reason == "not_a_fit",
            "checkin": 1,
            "session_id": "s-1",
            "duration_minutes": 45,
            "quiet_days": 1 if variant == 2 else 23,
        }


def english_in(text: str) -> list[str]:
    text = CLOCK.sub(" ", EMAIL.sub(" ", URL.sub(" ", text)))
    return sorted({w for w in re.findall(r"[a-zà-ÿœæ]+", text.lower()) if w in ENGLISH})


def readable(rendered: Rendered) -> str:
    """What a person reads: the subject, the plain text, and the HTML without its tags."""
    body = html.unescape(re.sub(r"<[^>]+>", " ", rendered.html))
    return f"{rendered.subject}\n{rendered.text}\n{body}"


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


@pytest.mark.parametrize("kind", sorted(CATEGORIES))
def test_every_french_email_holds_no_english(templates: Templates, kind: str) -> None:
    seen: set[str] = set()
    for values in contexts():
        if values["partner"] is None and kind in NEEDS_PARTNER:
            continue  # never sent without the partner's contact
        rendered = templates.render(kind, "fr", values)
        if rendered.text in seen:
            continue
        seen.add(rendered.text)
        shown = readable(rendered)
        assert not english_in(shown), (english_in(shown), shown)
        # French typography: a space before ? ! : ; (a clock time or an address aside)
        for line in CLOCK.sub("", URL.sub("", shown)).splitlines():
            assert not re.search(r"[^\s\u00a0\u202f][?!:;]", line), line
    assert len(seen) > 1  # the variants did change the text


def test_every_reason_and_profile_line_reads_french() -> None:
    for role, variant in itertools.product(("mentee", "mentor"), (0, 1, 2)):
        written = reading.reasons(explanation(variant), role, "fr")
        assert written
        lines = [f"{r.label} : {r.text}" for r in written]
        lines += [
            f"{label} : {text}"
            for label, text in reading.profile(partner_profile(role), "fr", NOW).lines
        ]
        for line in lines:
            assert not english_in(line), line


def static_text(path: str) -> Iterator[str]:
    """A template's own words, in every branch: its text, tags and attributes left out, and the
    strings it prints. Strings compared with ==, != or in are codes ("mentee", "completed"), as
    are a mapping's keys; template names are paths."""
    source = (TEMPLATES_DIR / path).read_text()
    tokens = [
        (kind, value) for _, kind, value in Templates().env.lex(source) if kind != "whitespace"
    ]
    # the text between Jinja's tags, a placeholder for each expression, so markup split by an
    # expression (<label for="rating-{{ n }}">) is still markup
    text = "".join(value if kind == "data" else " \x00 " for kind, value in tokens)
    yield re.sub(r"<[^>]*>", " ", text)
    for i, (kind, value) in enumerate(tokens):
        before = tokens[i - 1][1] if i else ""
        after = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        code = before in ("==", "!=", "in") or after == ":" or ".j2" in value
        if kind == "string" and not code:
            yield value.strip("\"'")


FRENCH_FILES = sorted(
    p.relative_to(TEMPLATES_DIR).as_posix() for p in (TEMPLATES_DIR / "fr").glob("*.j2")
)


@pytest.mark.parametrize("path", FRENCH_FILES)
def test_every_french_template_is_written_in_french(path: str) -> None:
    for text in static_text(path):
        assert not english_in(text), (path, english_in(text), text)


def test_the_check_knows_english_when_it_sees_it() -> None:
    assert english_in("Please accept or decline in the mentoring app") == [
        "accept",
        "app",
        "decline",
        "in",
        "mentoring",
        "please",
        "the",
    ]
    assert english_in("Bonjour, votre mentor a de l'expertise en négociation : 4,6/5") == []
    assert len(FRENCH_FILES) >= 3 * len(CATEGORIES)


PROBLEMS = (
    "forged",
    "expired",
    "other_person",
    "unknown_match",
    "closed",
    "not_confirmed",
    "answered",
    "bad_form",
    "too_large",
    "method",
    "unavailable",
)


def page_states() -> Iterator[tuple[str, dict[str, Any]]]:
    """The answer pages in every state that changes their text."""
    for role, variant, choice, other_accepted in itertools.product(
        ("mentee", "mentor"), (0, 1, 2), ("accept", "decline", None), (True, False)
    ):
        yield (
            "proposal",
            {
                "token": "jeton",
                "choice": choice,
                "role": role,
                "reader_name": AMELIE["name"],
                "other": reading.profile(partner_profile(role), "fr", NOW),
                "reasons": reading.reasons(explanation(variant), role, "fr"),
                "expires_at": datetime(2030, 1, 18, 12, tzinfo=UTC),
                "timezone": "Europe/Paris",
                "other_accepted": other_accepted,
            },
        )
    for role, kind, other in itertools.product(
        ("mentee", "mentor"), ("checkin", "closing"), (JEROME["name"], None)
    ):
        goals = list(TOPICS) if role == "mentee" and kind == "closing" else []
        feedback = {"token": "jeton", "kind": kind, "role": role, "reader_name": None}
        yield "feedback", {**feedback, "other_name": other, "goals": goals}
        for decision, other_accepted in itertools.product(("accepted", "declined"), (True, False)):
            yield (
                "thanks",
                {
                    "kind": "respond" if decision else kind,
                    "decision": decision,
                    "role": role,
                    "other_name": other,
                    "other_accepted": other_accepted,
                },
            )
        yield (
            "thanks",
            {
                "kind": kind,
                "decision": None,
                "role": role,
                "other_name": other,
                "other_accepted": False,
            },
        )
    fields = ("choice", "rating", "learned", "goal", "reason", "comment", "form")
    outcomes = ("confirmed", "declined", "expired", "cancelled", "completed", None)
    answers = ("accepted", "declined", "4", None)
    for code, field, outcome, answer, again in itertools.product(
        PROBLEMS, fields, outcomes, answers, (True, False)
    ):
        yield (
            "problem",
            {
                "code": code,
                "field": field,
                "back": "answer?t=jeton",
                "outcome": outcome,
                "kind": "respond" if answer in ("accepted", "declined") else "checkin",
                "answer": answer,
                "answered_at": NOW if again else None,
                "timezone": "Europe/Paris",
                "again": again,
            },
        )


def test_every_french_answer_page_holds_no_english(templates: Templates) -> None:
    seen: set[str] = set()
    for name, values in page_states():
        page = templates.page(name, "fr", values)
        if page in seen:
            continue
        seen.add(page)
        assert 'lang="fr"' in page
        shown = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)  # CSS is no text
        shown = html.unescape(re.sub(r"<[^>]+>", " ", shown))
        assert not english_in(shown), (name, english_in(shown), shown)
    assert len(seen) > 50  # the states did change the text
