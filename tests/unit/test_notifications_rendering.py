"""Templates: every kind renders in en and fr, HTML escapes what other systems send us, and the
locale follows the person's languages."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from services.notifications import reading
from services.notifications.domain import CATEGORIES, choose_locale
from services.notifications.rendering import Templates, format_time

pytestmark = pytest.mark.unit

INJECTED = "<script>alert('x')</script>"


NOW = datetime(2030, 3, 1, tzinfo=UTC)
EXPLANATION = [
    {
        "criterion": "topic_fit",
        "contribution": 0.4,
        "reason": "Covers your goal: python",
        "facts": {
            "goals": [{"topic": f"python {INJECTED}", "priority": 1, "covered": True}],
            "covered": [f"python {INJECTED}"],
            "not_covered": [],
        },
    }
]
LINKS = {
    "accept": "https://mentoring.example.org/answer?t=abc&choice=accept",
    "decline": "https://mentoring.example.org/answer?t=abc&choice=decline",
    "feedback": "https://mentoring.example.org/answer?t=def",
}


def context(kind: str, locale: str = "en") -> dict[str, object]:
    grace = {
        "display_name": f"Grace {INJECTED}",
        "role": "mentor",
        "languages": ["en"],
        "timezone": "America/New_York",
        "expertise": [{"topic": f"python {INJECTED}", "level": 5}],
    }
    return {
        "recipient": {"name": f"Ada {INJECTED}"},
        "partner": {"name": f"Grace {INJECTED}", "email": "grace@example.com"},
        "reasons": reading.reasons(EXPLANATION, "mentee", locale),
        "profile": reading.profile(grace, locale, NOW),
        "links": LINKS,
        "feedback_link_days": 30,
        "timezone": "Europe/Paris",
        "role": "mentee",
        "match_id": "m-1",
        "program_id": "p-1",
        "score": 0.8,
        "expires_at": "2030-03-03T12:00:00+00:00",
        "explanation": [{"criterion": "topic_fit", "reason": f"python {INJECTED}"}],
        "outcome": "declined",
        "session_id": "s-1",
        "duration_minutes": 45,
        "checkin": 1,
        "quiet_days": 23,
        "reason": "not_a_fit",
        "ended_by_role": "mentor",
        "new_mentor": True,
    }


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


def test_both_locales_have_every_kind(templates: Templates) -> None:
    assert {"en", "fr"} <= set(templates.locales)
    for locale in ("en", "fr"):
        for kind in CATEGORIES:
            rendered = templates.render(kind, locale, context(kind, locale))
            assert rendered.subject and "\n" not in rendered.subject
            assert "Ada" in rendered.text
            assert f'lang="{locale}"' in rendered.html


@pytest.mark.parametrize("kind", sorted(CATEGORIES))
def test_html_escapes_injected_markup_and_text_keeps_it(templates: Templates, kind: str) -> None:
    rendered = templates.render(kind, "en", context(kind))
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert INJECTED in rendered.text  # plain text is not markup: shown as sent


def test_proposal_in_french_explains_and_shows_the_deadline_locally(templates: Templates) -> None:
    rendered = templates.render("match-proposal", "fr", context("match-proposal", "fr"))
    assert (
        rendered.subject == f"Nous vous proposons Grace {INJECTED} comme mentor : acceptez-vous ?"
    )
    assert f"- Sujets : Couvre votre objectif : python {INJECTED}" in rendered.text
    assert f"- Expertise : python {INJECTED} (expert reconnu)" in rendered.text
    assert "- Fuseau horaire : America/New_York (actuellement UTC-05:00)" in rendered.text
    assert "Merci de répondre avant le 3 mars 2030 à 13:00 (Europe/Paris) :" in rendered.text


@pytest.mark.parametrize("kind", ["match-proposal", "match-reminder"])
@pytest.mark.parametrize("locale", ["en", "fr"])
def test_a_proposal_is_answered_by_its_two_links(
    templates: Templates, kind: str, locale: str
) -> None:
    rendered = templates.render(kind, locale, context(kind, locale))
    labels = {"en": ("Accept", "Decline"), "fr": ("Accepter", "Refuser")}[locale]
    colon = " :" if locale == "fr" else ":"
    for choice, label in zip(("accept", "decline"), labels, strict=True):
        assert f"{label}{colon} {LINKS[choice]}" in rendered.text
        href = re.escape(LINKS[choice].replace("&", "&amp;"))
        assert re.search(f'<a href="{href}" style="[^"]+">{label}</a>', rendered.html)
    assert "grace@example.com" not in rendered.text + rendered.html  # not before both accept
    for app in ("mentoring app", "application de mentorat"):
        assert app not in rendered.text + rendered.html


def test_english_introduction_names_the_partner(templates: Templates) -> None:
    rendered = templates.render("match-introduction", "en", context("match-introduction"))
    assert rendered.subject.startswith("Meet your mentor: Grace")
    assert "grace@example.com" in rendered.text
    assert 'href="mailto:grace@example.com"' in rendered.html


def test_feedback_request_without_partner(templates: Templates) -> None:
    values = {**context("feedback-request"), "partner": None}
    rendered = templates.render("feedback-request", "en", values)
    assert "45-minute session?" in rendered.text
    assert f"Open the form: {LINKS['feedback']}" in rendered.text


@pytest.mark.parametrize(
    ("languages", "expected"),
    [
        (["fr", "en"], "fr"),
        (["de", "fr"], "fr"),  # no German templates: the next language we have
        (["FR-ca"], "fr"),
        (["de"], "en"),
        ([], "en"),
        (None, "en"),
    ],
)
def test_locale_is_the_first_language_we_have(languages: list[str] | None, expected: str) -> None:
    assert choose_locale(languages, ["en", "fr"]) == expected


def test_unknown_timezone_falls_back_to_utc() -> None:
    assert format_time("2030-03-03T12:00:00+00:00", "Mars/Olympus") == "3 March 2030 at 12:00 (UTC)"


def test_a_moment_reads_in_the_readers_language() -> None:
    moment = "2030-03-03T12:00:00+00:00"
    assert format_time(moment, "Europe/Paris", "fr") == "3 mars 2030 à 13:00 (Europe/Paris)"
    assert format_time(moment, "Europe/Paris", "de") == "3 March 2030 at 13:00 (Europe/Paris)"
