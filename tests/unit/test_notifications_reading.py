"""What a person reads about a proposal: the reasons written from matching's facts to the
reader's side, and the other person's profile, in English and in French."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from services.notifications.reading import CRITERIA, Profile, Reason, profile, reasons
from shared.contract.events import Criterion

pytestmark = pytest.mark.unit

WINTER = datetime(2030, 1, 15, 12, tzinfo=UTC)
SUMMER = datetime(2030, 7, 15, 12, tzinfo=UTC)


def goals(*topics: tuple[str, bool]) -> dict[str, Any]:
    """topic_fit's facts for goals given by importance, each (topic, covered)."""
    return {
        "goals": [
            {"topic": t, "priority": min(i + 1, 3), "covered": c} for i, (t, c) in enumerate(topics)
        ],
        "covered": [t for t, c in topics if c],
        "not_covered": [t for t, c in topics if not c],
    }


def through(*topics: tuple[str, str | None]) -> dict[str, Any]:
    """topic_fit's facts as matching writes them now: each goal (topic, the mentor's topic
    covering it when another one), None for a goal not covered at all."""
    facts = goals(*((t, via is not None) for t, via in topics))
    for goal, (topic, via) in zip(facts["goals"], topics, strict=True):
        goal["through"] = None if via in (None, topic) else via
        goal["credit"] = 0.0 if via is None else 1.0 if via == topic else 0.5
    return facts


def mutual(*shared: tuple[str, str], not_wanted: tuple[str, ...] = ()) -> dict[str, Any]:
    """mutual_learning's facts: each (mentee's offer, the mentor's interest it answers)."""
    return {
        "shared": [{"topic": t, "interest": i} for t, i in shared],
        "not_wanted": list(not_wanted),
    }


TWO_OF_THREE = goals(("python", True), ("sql", True), ("négociation", False))
# python covered through the mentor's django, sql directly, négociation not at all
VIA_DJANGO = through(("python", "django"), ("sql", "sql"), ("négociation", None))
SQL = mutual(("sql", "sql"), not_wanted=("excel",))
RATED = {"rating_mean": 4.57, "rating_count": 12, "provisional": False}


def item(criterion: str, facts: dict[str, Any] | None, contribution: float = 0.1) -> dict[str, Any]:
    written = {"criterion": criterion, "contribution": contribution, "reason": "v1 sentence"}
    return written if facts is None else {**written, "facts": facts}


def one(criterion: str, facts: dict[str, Any], role: str, locale: str) -> str | None:
    """The one reason written for one item, or None when it is left out."""
    written = reasons([item(criterion, facts)], role, locale)
    assert len(written) <= 1
    return written[0].text if written else None


# (criterion, facts, role, locale, text): every criterion, both sides, both languages
ONLY_PLACE = {"free_places": 1, "capacity": 1}
CASES = [
    ("topic_fit", TWO_OF_THREE, "mentee", "en", "Covers 2 of your 3 goals: python and sql"),
    ("topic_fit", TWO_OF_THREE, "mentee", "fr", "Couvre 2 de vos 3 objectifs : python et sql"),
    (
        "topic_fit",
        TWO_OF_THREE,
        "mentor",
        "en",
        "Wants to learn: python, sql, and négociation; your expertise covers 2 of the 3",
    ),
    (
        "topic_fit",
        TWO_OF_THREE,
        "mentor",
        "fr",
        "Souhaite apprendre : python, sql et négociation ; votre expertise en couvre 2 sur 3",
    ),
    ("topic_fit", goals(("sql", True)), "mentee", "en", "Covers your goal: sql"),
    ("topic_fit", goals(("sql", True)), "mentee", "fr", "Couvre votre objectif : sql"),
    ("topic_fit", goals(("sql", False)), "mentee", "en", "Does not cover your goal: sql"),
    ("topic_fit", goals(("sql", False)), "mentee", "fr", "Ne couvre pas votre objectif : sql"),
    (
        "topic_fit",
        goals(("sql", True), ("python", True)),
        "mentee",
        "fr",
        "Couvre tous vos objectifs : sql et python",
    ),
    (
        "topic_fit",
        goals(("sql", False), ("python", False)),
        "mentee",
        "fr",
        "Ne couvre aucun de vos objectifs",
    ),
    (
        "topic_fit",
        goals(("sql", True), ("python", True)),
        "mentor",
        "en",
        "Wants to learn: sql and python; your expertise covers both",
    ),
    (
        "topic_fit",
        goals(("sql", True), ("python", True)),
        "mentor",
        "fr",
        "Souhaite apprendre : sql et python ; votre expertise les couvre tous les deux",
    ),
    (
        "topic_fit",
        goals(("sql", False)),
        "mentor",
        "fr",
        "Souhaite apprendre : sql ; votre expertise ne le couvre pas",
    ),
    (
        "topic_fit",
        goals(("sql", False), ("python", False)),
        "mentor",
        "en",
        "Wants to learn: sql and python; your expertise covers none of them",
    ),
    # covered through a related topic: the mentee reads it by each goal, the mentor after
    (
        "topic_fit",
        VIA_DJANGO,
        "mentee",
        "en",
        "Covers 2 of your 3 goals: python (through django) and sql",
    ),
    (
        "topic_fit",
        VIA_DJANGO,
        "mentee",
        "fr",
        "Couvre 2 de vos 3 objectifs : python (via django) et sql",
    ),
    (
        "topic_fit",
        VIA_DJANGO,
        "mentor",
        "en",
        "Wants to learn: python, sql, and négociation; your expertise covers 2 of the 3 "
        "(python through django)",
    ),
    (
        "topic_fit",
        VIA_DJANGO,
        "mentor",
        "fr",
        "Souhaite apprendre : python, sql et négociation ; votre expertise en couvre 2 sur 3 "
        "(python via django)",
    ),
    (
        "topic_fit",
        through(("python", "django")),
        "mentee",
        "en",
        "Covers your goal: python (through django)",
    ),
    (
        "topic_fit",
        through(("python", "django")),
        "mentee",
        "fr",
        "Couvre votre objectif : python (via django)",
    ),
    (
        "topic_fit",
        through(("python", "django")),
        "mentor",
        "en",
        "Wants to learn: python; your expertise covers it (through django)",
    ),
    (
        "topic_fit",
        through(("python", "django")),
        "mentor",
        "fr",
        "Souhaite apprendre : python ; votre expertise le couvre (via django)",
    ),
    (
        "topic_fit",
        through(("python", "django"), ("sql", "postgresql")),
        "mentor",
        "fr",
        "Souhaite apprendre : python et sql ; votre expertise les couvre tous les deux "
        "(python via django et sql via postgresql)",
    ),
    (
        "topic_fit",
        through(("python", "django"), ("sql", "postgresql")),
        "mentee",
        "en",
        "Covers all your goals: python (through django) and sql (through postgresql)",
    ),
    # the same topic, however matching spelled it, is no "through"
    (
        "topic_fit",
        through(("python", "Python")),
        "mentee",
        "en",
        "Covers your goal: python",
    ),
    (
        "topic_fit",
        through(("sql", None)),
        "mentor",
        "en",
        "Wants to learn: sql; your expertise does not cover it",
    ),
    ("languages", {"shared": ["fr", "en"]}, "mentee", "en", "You both speak French and English"),
    (
        "languages",
        {"shared": ["fr", "en"]},
        "mentor",
        "fr",
        "Vous parlez tous les deux français et anglais",
    ),
    ("languages", {"shared": ["fr"]}, "mentor", "fr", "Vous parlez tous les deux français"),
    ("languages", {"shared": ["fr"]}, "mentee", "fr", "Vous parlez tous les deux français"),
    ("languages", {"shared": ["de"]}, "mentor", "en", "You both speak German"),
    ("languages", {"shared": []}, "mentor", "fr", "Aucune langue en commun"),
    ("timezone", {"hours_apart": 1.0}, "mentee", "en", "Your time zones are 1 hour apart"),
    ("timezone", {"hours_apart": 1.0}, "mentor", "fr", "Vos fuseaux horaires ont 1 heure d'écart"),
    ("timezone", {"hours_apart": 1.5}, "mentee", "en", "Your time zones are 1.5 hours apart"),
    (
        "timezone",
        {"hours_apart": 1.5},
        "mentee",
        "fr",
        "Vos fuseaux horaires ont 1,5 heure d'écart",
    ),
    ("timezone", {"hours_apart": 9.0}, "mentee", "fr", "Vos fuseaux horaires ont 9 heures d'écart"),
    ("timezone", {"hours_apart": 0.0}, "mentor", "en", "You are in the same time zone"),
    ("timezone", {"hours_apart": 0.0}, "mentee", "fr", "Vous êtes dans le même fuseau horaire"),
    ("seniority", {"gap": 3}, "mentee", "en", "3 levels more senior than you"),
    ("seniority", {"gap": 3}, "mentee", "fr", "3 niveaux au-dessus de vous"),
    ("seniority", {"gap": 3}, "mentor", "en", "3 levels more junior than you"),
    ("seniority", {"gap": 3}, "mentor", "fr", "3 niveaux en dessous de vous"),
    ("seniority", {"gap": -1}, "mentee", "en", "1 level more junior than you"),
    ("seniority", {"gap": -1}, "mentor", "fr", "1 niveau au-dessus de vous"),
    ("seniority", {"gap": 0}, "mentor", "en", "Same seniority level as you"),
    ("seniority", {"gap": 0}, "mentee", "fr", "Même niveau que vous"),
    ("seniority", {"gap": None}, "mentee", "en", None),  # not known for both: left out
    ("department", {"relation": "same"}, "mentee", "en", "You work in the same department"),
    ("department", {"relation": "same"}, "mentor", "fr", "Vous travaillez dans le même service"),
    (
        "department",
        {"relation": "different"},
        "mentor",
        "fr",
        "Vous travaillez dans des services différents : un regard neuf",
    ),
    ("department", {"relation": "same"}, "mentee", "fr", "Vous travaillez dans le même service"),
    (
        "department",
        {"relation": "different"},
        "mentor",
        "en",
        "You work in different departments: a fresh perspective",
    ),
    ("department", {"relation": "unknown"}, "mentee", "fr", None),
    ("reputation", RATED, "mentee", "en", "Rated 4.6/5 by mentees over 12 sessions"),
    ("reputation", RATED, "mentee", "fr", "Noté 4,6/5 par ses mentorés sur 12 séances"),
    (
        "reputation",
        {"rating_mean": 5.0, "rating_count": 1, "provisional": True},
        "mentee",
        "fr",
        "Noté 5,0/5 par ses mentorés sur 1 séance (encore peu d'avis)",
    ),
    (
        "reputation",
        {"rating_mean": None, "rating_count": 0, "provisional": True},
        "mentee",
        "en",
        "No ratings from mentees yet",
    ),
    ("reputation", RATED, "mentor", "en", None),  # their own rating: nothing about the mentee
    ("reputation", RATED, "mentor", "fr", None),
    ("load", {"free_places": 1, "capacity": 2}, "mentee", "en", "Has 1 of 2 mentoring places free"),
    (
        "load",
        {"free_places": 1, "capacity": 2},
        "mentee",
        "fr",
        "Il lui reste 1 place de mentorat sur 2",
    ),
    (
        "load",
        {"free_places": 1, "capacity": 2},
        "mentor",
        "en",
        "You have 1 of your 2 mentoring places free",
    ),
    (
        "load",
        {"free_places": 2, "capacity": 3},
        "mentor",
        "fr",
        "Il vous reste 2 places de mentorat sur 3",
    ),
    ("load", ONLY_PLACE, "mentee", "en", "Their one mentoring place is free"),
    ("load", ONLY_PLACE, "mentor", "en", "Your one mentoring place is free"),
    ("load", ONLY_PLACE, "mentee", "fr", "Sa seule place de mentorat est libre"),
    ("load", ONLY_PLACE, "mentor", "fr", "Votre seule place de mentorat est libre"),
    (
        "mutual_learning",
        SQL,
        "mentee",
        "en",
        "You can share sql with your mentor, who would like to learn it",
    ),
    (
        "mutual_learning",
        SQL,
        "mentee",
        "fr",
        "Vous pourrez partager sql avec votre mentor, qui souhaite l'apprendre",
    ),
    ("mutual_learning", SQL, "mentor", "en", "Can teach you sql, which you would like to learn"),
    (
        "mutual_learning",
        SQL,
        "mentor",
        "fr",
        "Peut vous apprendre sql, que vous souhaitez apprendre",
    ),
    (
        "mutual_learning",
        mutual(("sql", "sql"), ("excel", "excel")),
        "mentee",
        "en",
        "You can share sql and excel with your mentor, who would like to learn them",
    ),
    (
        "mutual_learning",
        mutual(("sql", "sql"), ("excel", "excel")),
        "mentee",
        "fr",
        "Vous pourrez partager sql et excel avec votre mentor, qui souhaite les apprendre",
    ),
    # an offer answering another interest (django for python): each side reads its own topics
    (
        "mutual_learning",
        mutual(("django", "python"), ("sql", "sql")),
        "mentee",
        "en",
        "You can share django and sql with your mentor, who would like to learn python and sql",
    ),
    (
        "mutual_learning",
        mutual(("django", "python"), ("sql", "sql")),
        "mentee",
        "fr",
        "Vous pourrez partager django et sql avec votre mentor, qui souhaite apprendre python "
        "et sql",
    ),
    (
        "mutual_learning",
        mutual(("django", "python"), ("sql", "sql")),
        "mentor",
        "en",
        "Can teach you python (through django) and sql, which you would like to learn",
    ),
    (
        "mutual_learning",
        mutual(("django", "python"), ("flask", "python")),
        "mentor",
        "fr",
        "Peut vous apprendre python (via django et flask), que vous souhaitez apprendre",
    ),
    # nothing the mentor wants: nothing to read, on either side
    ("mutual_learning", mutual(not_wanted=("sql",)), "mentee", "en", None),
    ("mutual_learning", mutual(not_wanted=("sql",)), "mentee", "fr", None),
    ("mutual_learning", mutual(not_wanted=("sql",)), "mentor", "en", None),
    ("mutual_learning", mutual(), "mentor", "fr", None),
]


@pytest.mark.parametrize(("criterion", "facts", "role", "locale", "text"), CASES)
def test_each_criterion_is_written_to_the_readers_side(
    criterion: str, facts: dict[str, Any], role: str, locale: str, text: str | None
) -> None:
    assert one(criterion, facts, role, locale) == text


def test_every_criterion_is_covered_for_both_roles_and_locales() -> None:
    seen = {(c, r, loc) for c, _, r, loc, text in CASES if text or c == "reputation"}
    criteria = {c for c, *_ in CASES}
    assert criteria == set(get_args(Criterion))
    assert seen == {
        (c, r, loc) for c in criteria for r in ("mentee", "mentor") for loc in ("en", "fr")
    }


EXPLANATION = [
    item("load", {"free_places": 1, "capacity": 2}, 0.05),
    item("topic_fit", TWO_OF_THREE, 0.4),
    item("languages", {"shared": ["fr"]}, 0.2),
    item("reputation", RATED, 0.1),
    item("timezone", {"hours_apart": 1.0}, 0.15),
]


def test_reasons_come_largest_contribution_first_with_their_label() -> None:
    written = reasons(EXPLANATION, "mentee", "fr")
    assert [r.criterion for r in written] == [
        "topic_fit",
        "languages",
        "timezone",
        "reputation",
        "load",
    ]
    assert written[0] == Reason(
        "topic_fit", "Sujets", "Couvre 2 de vos 3 objectifs : python et sql"
    )
    assert [r.label for r in reasons(EXPLANATION, "mentor", "en")] == [
        "Topics",
        "Languages",
        "Time zone",
        "Availability",
    ]


def test_items_without_facts_or_that_cannot_be_read_are_skipped() -> None:
    older = [
        item("topic_fit", None, 0.9),  # a publisher from before facts
        item("languages", {}, 0.8),
        item("load", {"free_places": "many"}, 0.7),  # facts we cannot read
        item("mystery", {"score": 1}, 0.6),  # a criterion we cannot write yet
        item("timezone", {"hours_apart": 2.0, "through": "a later key"}, 0.5),
    ]
    assert reasons(older, "mentee", "en") == [
        Reason("timezone", "Time zone", "Your time zones are 2 hours apart")
    ]
    assert reasons([], "mentor", "fr") == []


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("de", "en"), ("en-GB", "en"), ("fr-CA", "fr"), ("fr_BE", "fr"), ("", "en")],
)
def test_other_locales_read_english_and_french_variants_french(locale: str, expected: str) -> None:
    assert reasons(EXPLANATION, "mentee", locale) == reasons(EXPLANATION, "mentee", expected)
    now = WINTER
    person = {"display_name": "Zoé", "role": "mentee", "languages": ["fr"], "goals": []}
    assert profile(person, locale, now) == profile(person, expected, now)


def test_nothing_written_to_a_mentor_says_your_mentor() -> None:
    variants: list[dict[str, Any]] = [
        item("topic_fit", facts)
        for facts in (
            TWO_OF_THREE,
            goals(("sql", True)),
            goals(("sql", False)),
            goals(("a", True), ("b", True), ("c", True)),
            goals(("a", False), ("b", False)),
            VIA_DJANGO,
            through(("python", "django")),
        )
    ]
    variants += [item("mutual_learning", f) for f in (SQL, mutual(("django", "python")))]
    variants += [item("seniority", {"gap": gap}) for gap in (-2, -1, 0, 1, 4)]
    variants += [item("department", {"relation": r}) for r in ("same", "different")]
    variants += [item("timezone", {"hours_apart": h}) for h in (0.0, 1.0, 5.5)]
    variants += [
        item("languages", {"shared": ["en"]}),
        item("reputation", RATED),
        item("load", {"free_places": 0, "capacity": 1}),
    ]
    for locale in ("en", "fr"):
        written = " ".join(r.text for r in reasons(variants, "mentor", locale)).lower()
        assert written
        for wrong in ("your mentor", "votre mentor", "rated", "noté"):
            assert wrong not in written
        # and a mentee never reads about their own goals as if they were someone else's
        to_mentee = " ".join(r.text for r in reasons(variants, "mentee", locale)).lower()
        # (their mentor "souhaite apprendre" what they can share: that is about the mentor)
        assert "wants to learn:" not in to_mentee and "souhaite apprendre :" not in to_mentee


def test_every_criterion_of_the_contract_has_a_label_in_both_languages() -> None:
    assert set(CRITERIA["en"]) == set(CRITERIA["fr"]) == set(get_args(Criterion))


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_colons_and_semicolons_follow_each_languages_typography(locale: str) -> None:
    """French puts a space before ":" and ";", English none; a French reason names no English
    word ("through")."""
    texts = [t for c, f, role, loc, _ in CASES if loc == locale and (t := one(c, f, role, loc))]
    assert any(":" in t for t in texts) and any(";" in t for t in texts)
    for text in texts:
        for before in re.findall(r"(.)[:;]", text):
            assert (before == " ") == (locale == "fr"), text
        if locale == "fr":
            assert "through" not in text, text


# --- profile ------------------------------------------------------------------------------------

MENTOR = {
    "display_name": "Marie Curie",
    "role": "mentor",
    "email": "marie@example.com",
    "languages": ["fr", "en"],
    "timezone": "Europe/Paris",
    "expertise": [
        {"topic": "conception de formations", "level": 4},
        {"topic": "prise de parole", "level": 5},
        {"topic": "sql", "level": 1},
    ],
    "goals": [],
}
MENTEE = {
    "display_name": "Nicolas Martin",
    "role": "mentee",
    "email": "nicolas@example.com",
    "languages": ["en"],
    "timezone": "America/St_Johns",
    "expertise": [],
    "goals": [
        {"topic": "sql", "priority": 2},
        {"topic": "negotiation", "priority": 1},
        {"topic": "python", "priority": 3},
    ],
}


def test_a_mentee_reads_the_mentors_expertise_highest_level_first() -> None:
    assert profile(MENTOR, "en", WINTER) == Profile(
        "Marie Curie",
        (
            (
                "Expertise",
                "prise de parole (recognised expert), conception de formations (advanced), "
                "sql (some experience)",
            ),
            ("Languages", "French and English"),
            ("Time zone", "Europe/Paris (currently UTC+01:00)"),
        ),
    )
    assert profile(MENTOR, "fr", SUMMER) == Profile(
        "Marie Curie",
        (
            (
                "Expertise",
                "prise de parole (expert reconnu), conception de formations (niveau avancé) "
                "et sql (premières expériences)",
            ),
            ("Langues", "français et anglais"),
            ("Fuseau horaire", "Europe/Paris (actuellement UTC+02:00)"),  # summer time
        ),
    )


def test_a_mentor_reads_the_mentees_goals_by_priority() -> None:
    assert profile(MENTEE, "en", WINTER).lines == (
        ("Goals", "negotiation (top priority), sql, python"),
        ("Languages", "English"),
        ("Time zone", "America/St_Johns (currently UTC-03:30)"),
    )
    assert profile(MENTEE, "fr", WINTER).lines[:2] == (
        ("Objectifs", "negotiation (prioritaire), sql et python"),
        ("Langues", "anglais"),
    )


def test_a_mentor_reads_what_the_mentee_can_share_when_known() -> None:
    sharing = {**MENTEE, "offers": ["sql", "prise de notes"]}
    assert profile(sharing, "en", WINTER).lines[:2] == (
        ("Goals", "negotiation (top priority), sql, python"),
        ("Can share", "sql, prise de notes"),
    )
    assert profile(sharing, "fr", WINTER).lines[1] == ("Peut partager", "sql et prise de notes")
    for silent in ({**MENTEE, "offers": []}, {**MENTEE, "offers": None}):  # none said: no line
        assert profile(silent, "fr", WINTER) == profile(MENTEE, "fr", WINTER)


def test_a_mentee_reads_what_the_mentor_would_like_to_learn_when_known() -> None:
    learning = {**MENTOR, "learning_interests": ["tiktok", "prise de notes"]}
    assert profile(learning, "en", WINTER).lines[1] == (
        "Would like to learn",
        "tiktok, prise de notes",
    )
    assert profile(learning, "fr", WINTER).lines[:2] == (
        (
            "Expertise",
            "prise de parole (expert reconnu), conception de formations (niveau avancé) "
            "et sql (premières expériences)",
        ),
        ("Souhaite apprendre", "tiktok et prise de notes"),
    )
    for silent in ({**MENTOR, "learning_interests": []}, {**MENTOR, "learning_interests": None}):
        assert profile(silent, "fr", WINTER) == profile(MENTOR, "fr", WINTER)


def test_every_level_has_words_in_both_languages() -> None:
    levels = [{"topic": f"t{n}", "level": n} for n in range(1, 6)]
    for locale in ("en", "fr"):
        [(_, text)] = profile({"role": "mentor", "expertise": levels}, locale, WINTER).lines
        assert text.count("(") == 5 and "t5 (" in text.split(",")[0]


def test_the_profile_never_shows_the_address_and_copes_with_little() -> None:
    for person in (MENTOR, MENTEE):
        for locale in ("en", "fr"):
            shown = repr(profile(person, locale, WINTER))
            assert "@" not in shown
    assert profile(None, "fr", WINTER) == Profile(None, ())
    bare = {"display_name": "Zoé", "role": "mentee", "timezone": "Mars/Olympus", "goals": None}
    assert profile(bare, "fr", WINTER) == Profile("Zoé", (("Fuseau horaire", "Mars/Olympus"),))
    assert profile({"role": "mentor"}, "en", WINTER) == Profile(None, ())
