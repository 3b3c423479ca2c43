"""Templates: every kind renders in en and fr, HTML escapes what other systems send us, and the
locale follows the person's languages."""

from __future__ import annotations

import pytest

from services.notifications.domain import CATEGORIES, choose_locale
from services.notifications.rendering import Templates, format_time

pytestmark = pytest.mark.unit

INJECTED = "<script>alert('x')</script>"


def context(kind: str) -> dict[str, object]:
    return {
        "recipient": {"name": f"Ada {INJECTED}"},
        "partner": {"name": f"Grace {INJECTED}", "email": "grace@example.com"},
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
            rendered = templates.render(kind, locale, context(kind))
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
    rendered = templates.render("match-proposal", "fr", context("match-proposal"))
    assert rendered.subject.startswith("Nous vous avons trouvé un mentor")
    assert "Sujets : python" in rendered.text
    assert "2030-03-03 13:00 (Europe/Paris)" in rendered.text


def test_english_introduction_names_the_partner(templates: Templates) -> None:
    rendered = templates.render("match-introduction", "en", context("match-introduction"))
    assert rendered.subject.startswith("Meet your mentor: Grace")
    assert "grace@example.com" in rendered.text
    assert 'href="mailto:grace@example.com"' in rendered.html


def test_feedback_request_without_partner(templates: Templates) -> None:
    values = {**context("feedback-request"), "partner": None}
    rendered = templates.render("feedback-request", "en", values)
    assert "45-minute session?" in rendered.text


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
    assert format_time("2030-03-03T12:00:00+00:00", "Mars/Olympus") == "2030-03-03 12:00 (UTC)"
