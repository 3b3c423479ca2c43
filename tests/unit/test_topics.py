"""The taxonomy of topics, the minimum topic fit, mutual learning and why mentees wait."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.matching.domain import topics
from services.matching.domain.config import ProgramConfig
from services.matching.domain.explain import explain
from services.matching.domain.scoring import (
    Candidate,
    Mentee,
    Mentor,
    MentorPool,
    best_or_reason,
    rank,
)
from services.matching.domain.topics import DEFAULT, Taxonomy
from shared.contract.events import ProgramConfigured, ProgramRules, TopicDefinition

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def mentor(person_id: str, *expertise: tuple[str, int], **fields: object) -> Mentor:
    return Mentor(person_id, ("en",), "Europe/Paris", expertise=expertise, capacity=2, **fields)  # type: ignore[arg-type]


def mentee(*goals: str, **fields: object) -> Mentee:
    return Mentee("n1", ("en",), "Europe/Paris", goals=tuple((g, 1) for g in goals), **fields)  # type: ignore[arg-type]


def reasons_of(candidate: Candidate, who: Mentee, config: ProgramConfig) -> dict[str, str]:
    _, items = explain(candidate, who, config, NOW)
    return {i.criterion: i.reason for i in items}


# --- the taxonomy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("goal", "expertise", "credit"),
    [
        ("python", "python", topics.EXACT),
        ("Python", "Django", topics.NARROWER),  # a django expert knows python well
        ("django", "python", topics.BROADER),  # a python expert knows some django
        ("communication", "public speaking", topics.NARROWER),
        ("public speaking", "storytelling", topics.RELATED),
        ("people management", "leadership", topics.RELATED),  # related beats broader (0.5)
        ("python", "java", topics.SIBLING),  # both programming languages
        ("software engineering", "python", topics.NARROWER**2),
        ("prise de parole en public", "Public-Speaking", topics.EXACT),  # French name
        ("ML", "machine learning", topics.EXACT),  # alias
        ("python", "sales", 0.0),
        ("knitting", "knitting", topics.EXACT),  # unknown topics still match themselves
        ("knitting", "python", 0.0),
    ],
)
def test_credit_between_topics(goal: str, expertise: str, credit: float) -> None:
    assert DEFAULT.credit(goal, expertise) == pytest.approx(credit)


def test_every_shipped_topic_has_an_english_and_a_french_name() -> None:
    from services.matching.domain.default_topics import DEFAULT_TOPICS

    assert len(DEFAULT_TOPICS) >= 100
    for english, french, *_ in DEFAULT_TOPICS:
        assert DEFAULT.key(english) == DEFAULT.key(french) == topics.normalise_topic(english)


def test_a_program_adds_topics_names_and_relations() -> None:
    extended = DEFAULT.extended(
        [
            TopicDefinition(topic="FastAPI", broader=["python"], related=["django"]),
            TopicDefinition(topic="public speaking", names={"de": "Rhetorik"}),  # a shipped one
        ]
    )
    assert extended.credit("python", "fastapi") == topics.NARROWER
    assert extended.credit("django", "FastAPI") == topics.RELATED
    assert extended.credit("public speaking", "rhetorik") == topics.EXACT
    assert extended.credit("public speaking", "storytelling") == topics.RELATED  # kept
    assert DEFAULT.credit("python", "fastapi") == 0.0  # the shipped taxonomy is untouched
    again = DEFAULT.extended(
        [
            TopicDefinition(topic="FastAPI", broader=["python"], related=["django"]),
            TopicDefinition(topic="public speaking", names={"de": "Rhetorik"}),
        ]
    )
    assert again is extended  # built once per content
    config = ProgramConfig.of(
        ProgramConfigured(
            program_id="p", topics=[TopicDefinition(topic="fastapi", broader=["python"])]
        )
    )
    (best,) = rank(MentorPool([mentor("m1", ("FastAPI", 5))], NOW), mentee("python"), config)
    assert best.values["topic_fit"] == pytest.approx(topics.NARROWER)


def test_exact_names_only_without_relations() -> None:
    exact = Taxonomy([], "exact")
    assert exact.credit("Public-Speaking", "public speaking") == 1.0
    assert exact.credit("python", "django") == 0.0


# --- related topics in scores and explanations -------------------------------------------------


def test_a_goal_is_covered_through_a_related_topic() -> None:
    pool = MentorPool([mentor("django-dev", ("django", 5)), mentor("sales", ("sales", 5))], NOW)
    who = mentee("python")
    ranked = rank(pool, who, ProgramConfig())
    assert [c.mentor.person_id for c in ranked] == ["django-dev"]  # sales covers no goal
    assert ranked[0].values["topic_fit"] == pytest.approx(topics.NARROWER)
    assert reasons_of(ranked[0], who, ProgramConfig())["topic_fit"] == (
        "Covers your goal: python (through django)"
    )


def test_direct_expertise_beats_related_expertise() -> None:
    pool = MentorPool(
        [mentor("related", ("storytelling", 5)), mentor("direct", ("public speaking", 5))], NOW
    )
    ranked = rank(pool, mentee("Public speaking"), ProgramConfig())
    assert [c.mentor.person_id for c in ranked] == ["direct", "related"]


# --- the minimum topic fit -------------------------------------------------------------------------


def test_by_default_a_proposal_covers_at_least_one_goal() -> None:
    """A mentor better on every other criterion, covering no goal, is never proposed."""
    popular = mentor("popular", ("sales", 5), rating_sum=50, rating_count=10, seniority=8)
    modest = mentor("modest", ("python", 1))
    who = mentee("django", seniority=3)
    ranked = rank(MentorPool([popular, modest], NOW), who, ProgramConfig())
    assert [c.mentor.person_id for c in ranked] == ["modest"]
    off = ProgramConfig(rules=ProgramRules(min_topic_fit=0))
    assert {c.mentor.person_id for c in rank(MentorPool([popular, modest], NOW), who, off)} == {
        "popular",
        "modest",
    }


def test_a_higher_minimum_asks_for_more_fit() -> None:
    pool = MentorPool([mentor("faint", ("java", 2)), mentor("strong", ("python", 4))], NOW)
    who = mentee("python")
    loose = rank(pool, who, ProgramConfig())
    assert {c.mentor.person_id for c in loose} == {"faint", "strong"}  # java: 0.3 x 0.4
    strict = ProgramConfig(rules=ProgramRules(min_topic_fit=0.5))
    assert [c.mentor.person_id for c in rank(pool, who, strict)] == ["strong"]


# --- mutual learning -----------------------------------------------------------------------------


def test_mutual_learning_credits_what_the_mentee_can_teach_the_mentor() -> None:
    curious = mentor("curious", ("leadership", 4), learning_interests=("generative AI", "sql"))
    other = mentor("other", ("leadership", 4), learning_interests=("accounting",))
    who = mentee("leadership", offers=("genai", "cooking"))
    ranked = rank(MentorPool([other, curious], NOW), who, ProgramConfig())
    assert [c.mentor.person_id for c in ranked] == ["curious", "other"]
    assert ranked[0].values["mutual_learning"] == pytest.approx(0.5)  # 1 of 2 offers wanted
    assert ranked[1].values["mutual_learning"] == 0.0
    _, items = explain(ranked[0], who, ProgramConfig(), NOW)
    item = next(i for i in items if i.criterion == "mutual_learning")
    assert item.facts == {
        "shared": [{"topic": "genai", "interest": "generative AI"}],
        "not_wanted": ["cooking"],
    }
    assert item.reason == "You can share genai: your mentor would like to learn it"
    assert item.contribution > 0


def test_related_offers_count_partly_and_nothing_offered_counts_nothing() -> None:
    curious = mentor("curious", ("leadership", 4), learning_interests=("python",))
    (candidate,) = rank(
        MentorPool([curious], NOW), mentee("leadership", offers=("django",)), ProgramConfig()
    )
    assert candidate.values["mutual_learning"] == pytest.approx(topics.NARROWER)
    (candidate,) = rank(MentorPool([curious], NOW), mentee("leadership"), ProgramConfig())
    assert candidate.values["mutual_learning"] == 0.0


# --- why a mentee waits ----------------------------------------------------------------------------


def waiting(
    pool: list[Mentor],
    who: Mentee,
    config: ProgramConfig | None = None,
    excluded: tuple[str, ...] = (),
) -> str | Candidate:
    found = best_or_reason(MentorPool(pool, NOW), who, config or ProgramConfig(), excluded)
    return found if isinstance(found, str) else found.mentor.person_id  # type: ignore[return-value]


def test_each_reason_is_the_first_rule_that_leaves_no_mentor() -> None:
    python = mentor("m1", ("python", 4))
    assert waiting([], mentee("python")) == "no_mentor"
    german = Mentor("m2", ("de",), "Europe/Paris", expertise=(("python", 4),))
    assert waiting([german], mentee("python")) == "no_common_language"
    assert waiting([python, german], mentee("sales")) == "no_topic"
    far = ProgramConfig(rules=ProgramRules(max_timezone_difference_hours=1))
    tokyo = Mentor("m3", ("en",), "Asia/Tokyo", expertise=(("python", 4),))
    assert waiting([tokyo], mentee("python"), far) == "program_rule"
    assert waiting([python], mentee("python", manager_id="m1")) == "program_rule"
    assert waiting([python], mentee("python"), excluded=("m1",)) == "already_proposed"
    full = Mentor("m4", ("en",), "Europe/Paris", expertise=(("python", 4),), capacity=1, load=1)
    assert waiting([full], mentee("python")) == "no_free_place"
    assert waiting([full, python], mentee("python")) == "m1"
