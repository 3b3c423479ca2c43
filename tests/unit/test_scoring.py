"""Scoring, hard rules and explanations of matching, on random pools."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matching.domain import criteria
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
from services.matching.domain.topics import DEFAULT
from shared.contract.events import ProgramConfigured, ProgramRules

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TOPICS = ["public speaking", "python", "leadership", "negotiation", "sales"]
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/London"]

languages = st.lists(st.sampled_from(["en", "fr", "de"]), min_size=1, max_size=2, unique=True).map(
    tuple
)
mentors = st.builds(
    Mentor,
    person_id=st.sampled_from([f"m{i}" for i in range(12)]),
    languages=languages,
    timezone=st.sampled_from(ZONES),
    department=st.sampled_from([None, "eng", "sales"]),
    seniority=st.one_of(st.none(), st.integers(1, 10)),
    expertise=st.lists(
        st.tuples(st.sampled_from(TOPICS), st.integers(1, 5)), min_size=1, max_size=3
    ).map(tuple),
    capacity=st.integers(1, 3),
    load=st.integers(0, 3),
    rating_count=st.integers(0, 10),
    learning_interests=st.lists(st.sampled_from(TOPICS), max_size=2).map(tuple),
).flatmap(  # a sum each rating of which is 1..5
    lambda m: st.integers(m.rating_count, 5 * m.rating_count).map(
        lambda total: replace(m, rating_sum=total)
    )
)
mentees = st.builds(
    Mentee,
    offers=st.lists(st.sampled_from(TOPICS), max_size=2).map(tuple),
    person_id=st.sampled_from(["n1", "m1"]),  # sometimes also enrolled as a mentor
    languages=languages,
    timezone=st.sampled_from(ZONES),
    department=st.sampled_from([None, "eng", "sales"]),
    seniority=st.one_of(st.none(), st.integers(1, 10)),
    manager_id=st.sampled_from([None, "m2", "m3"]),
    goals=st.lists(
        st.tuples(st.sampled_from(TOPICS), st.integers(1, 3)), min_size=1, max_size=3
    ).map(tuple),
)
rules = st.builds(
    ProgramRules,
    max_timezone_difference_hours=st.one_of(st.none(), st.sampled_from([0, 3, 8])),
    department=st.sampled_from(["any", "cross", "same"]),
    min_topic_fit=st.sampled_from([0.0, 0.01, 0.3]),
)


def unique_by_id(pool: list[Mentor]) -> list[Mentor]:
    return list({m.person_id: m for m in pool}.values())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(mentors, max_size=12).map(unique_by_id),
    mentees,
    rules,
    st.sets(st.sampled_from(["m4", "m5"])),
)
def test_hard_rules_are_never_broken(
    pool: list[Mentor], mentee: Mentee, rule: ProgramRules, excluded: set[str]
) -> None:
    config = ProgramConfig(rules=rule)
    for candidate in rank(MentorPool(pool, NOW), mentee, config, excluded, limit=50):
        mentor = candidate.mentor
        assert set(mentor.languages) & set(mentee.languages), "no shared language"
        assert mentor.person_id != mentee.person_id, "mentor for themselves"
        assert mentor.person_id != mentee.manager_id, "mentor for their own report"
        assert mentor.person_id not in excluded, "a pair that already said no"
        assert mentor.load < mentor.capacity, "over capacity"
        if rule.department == "same":
            assert mentor.department == mentee.department is not None
        if rule.department == "cross":
            assert mentor.department != mentee.department
        if rule.min_topic_fit > 0:
            assert any(
                config.taxonomy.credit(g, t) for g, _ in mentee.goals for t, _ in mentor.expertise
            )
            assert candidate.values["topic_fit"] >= rule.min_topic_fit
        assert 0.0 <= candidate.score <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(mentors, min_size=1, max_size=12).map(unique_by_id), mentees)
def test_explanations_add_up_to_the_score_and_ranking_is_by_score(
    pool: list[Mentor], mentee: Mentee
) -> None:
    config = ProgramConfig()
    ranked = rank(MentorPool(pool, NOW), mentee, config, limit=50)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    for candidate in ranked:
        score, items = explain(candidate, mentee, config, NOW)
        assert [i.criterion for i in items] == list(config.normalised_weights())
        assert sum(i.contribution for i in items) == pytest.approx(score, abs=1e-9)
        assert score == pytest.approx(candidate.score, abs=5e-4)
        assert all(i.reason and i.reason[0].isupper() for i in items)


def test_reasons_read_like_sentences() -> None:
    mentor = Mentor(
        "m1",
        ("fr", "en"),
        "Europe/Paris",
        "eng",
        8,
        expertise=(("Training-Design", 5), ("public speaking", 4)),
        capacity=3,
        load=1,
        rating_sum=46,
        rating_count=10,
    )
    mentee = Mentee(
        "n1",
        ("fr",),
        "Europe/Paris",
        "sales",
        4,
        goals=(("training design", 1), ("public speaking", 2), ("negotiation", 3)),
    )
    (candidate,) = rank(MentorPool([mentor], NOW), mentee, ProgramConfig())
    _, items = explain(candidate, mentee, ProgramConfig(), NOW)
    reasons = {i.criterion: i.reason for i in items}
    assert reasons["topic_fit"] == (
        "Covers 3 of your 3 goals: training design, public speaking,"
        " negotiation (through public speaking)"
    )
    assert reasons["languages"] == "You both speak French"
    assert reasons["timezone"] == "You are in the same time zone"
    assert reasons["seniority"] == "Your mentor is 4 levels more senior"
    assert reasons["reputation"] == "Rated 4.6/5 by mentees over 10 sessions"
    assert reasons["load"] == "Has 2 of 3 mentoring places free"
    # the facts each sentence was written from, for consumers that write their own (contract)
    facts = {i.criterion: i.facts for i in items}
    assert facts["topic_fit"] == {
        "goals": [
            {
                "topic": "training design",
                "priority": 1,
                "covered": True,
                "through": None,
                "credit": 1.0,
            },
            {
                "topic": "public speaking",
                "priority": 2,
                "covered": True,
                "through": None,
                "credit": 1.0,
            },
            {  # the shipped taxonomy: both are parts of communication (siblings)
                "topic": "negotiation",
                "priority": 3,
                "covered": True,
                "through": "public speaking",
                "credit": 0.3,
            },
        ],
        "covered": ["training design", "public speaking", "negotiation"],
        "not_covered": [],
    }
    assert facts["languages"] == {"shared": ["fr"]}
    assert facts["timezone"] == {"hours_apart": 0.0}
    assert facts["seniority"] == {"gap": 4}
    assert facts["department"] == {"relation": "different"}
    assert facts["reputation"] == {"rating_mean": 4.6, "rating_count": 10, "provisional": False}
    assert facts["load"] == {"free_places": 2, "capacity": 3}


def test_the_time_zone_gap_is_the_short_way_round_the_clock() -> None:
    """Every pair of UTC offsets (-12 to +14, by quarter hours), as the scorers broadcast them."""
    offsets = np.arange(-12 * 4, 14 * 4 + 1) / 4
    gap = criteria.gap_hours(offsets[:, None], offsets[None, :])
    difference = offsets[:, None] - offsets[None, :]
    short_way = np.min([np.abs(difference + 24 * turns) for turns in (-2, -1, 0, 1, 2)], axis=0)
    assert np.array_equal(gap, short_way)
    assert gap.min() == 0 and gap.max() == 12
    assert np.array_equal(gap, gap.T)


def test_the_farthest_offsets_are_two_hours_apart() -> None:
    """Kiritimati (+14) and Baker Island (-12) are 26 hours apart one way, 2 the other: the
    time zone is worth almost 1, and the explanation says so."""
    kiritimati = criteria.utc_offset_hours("Pacific/Kiritimati", NOW)
    baker = criteria.utc_offset_hours("Etc/GMT+12", NOW)
    assert (kiritimati, baker) == (14, -12)
    assert float(criteria.gap_hours(kiritimati, baker)) == 2
    mentor = Mentor("m1", ("en",), "Pacific/Kiritimati", expertise=(("sales", 3),))
    mentee = Mentee("n1", ("en",), "Etc/GMT+12", goals=(("sales", 1),))
    (candidate,) = rank(MentorPool([mentor], NOW), mentee, ProgramConfig())
    assert candidate.values["timezone"] == pytest.approx(1 - 2 / 12)
    _, items = explain(candidate, mentee, ProgramConfig(), NOW)
    assert {i.criterion: i.reason for i in items}["timezone"] == "Your time zones are 2 hours apart"


def test_poorly_rated_mentors_are_proposed_less() -> None:
    """Same profile, different ratings: the well-rated mentor ranks first, and explanations say why."""
    base = {
        "languages": ("en",),
        "timezone": "Europe/Paris",
        "expertise": (("python", 4),),
        "capacity": 2,
    }
    good = Mentor("good", rating_sum=48, rating_count=10, **base)  # type: ignore[arg-type]
    poor = Mentor("poor", rating_sum=15, rating_count=10, **base)  # type: ignore[arg-type]
    new = Mentor("new", **base)  # type: ignore[arg-type]
    mentee = Mentee("n1", ("en",), "Europe/Paris", goals=(("python", 1),))
    ranked = rank(MentorPool([poor, new, good], NOW), mentee, ProgramConfig())
    assert [c.mentor.person_id for c in ranked] == ["good", "new", "poor"]
    _, items = explain(ranked[-1], mentee, ProgramConfig(), NOW)
    assert "Rated 1.5/5" in next(i.reason for i in items if i.criterion == "reputation")


def test_few_ratings_are_shrunk_towards_the_prior() -> None:
    base = {
        "languages": ("en",),
        "timezone": "Europe/Paris",
        "expertise": (("python", 4),),
        "capacity": 2,
    }
    one_bad = Mentor("one-bad", rating_sum=1, rating_count=1, **base)  # type: ignore[arg-type]
    many_bad = Mentor("many-bad", rating_sum=20, rating_count=20, **base)  # type: ignore[arg-type]
    pool = MentorPool([one_bad, many_bad], NOW)
    assert pool.reputation[0] > pool.reputation[1] > 0.0


def test_program_weights_change_the_ranking() -> None:
    near = Mentor("near", ("en",), "Europe/Paris", expertise=(("django", 1),))
    expert = Mentor("expert", ("en",), "Asia/Tokyo", expertise=(("python", 5),))
    mentee = Mentee("n1", ("en",), "Europe/Paris", goals=(("python", 1),))
    pool = MentorPool([near, expert], NOW)
    assert rank(pool, mentee, ProgramConfig())[0].mentor.person_id == "expert"
    timezone_first = ProgramConfig.of(
        ProgramConfigured(program_id="p", weights={"timezone": 5.0, "topic_fit": 0.1})
    )
    assert rank(pool, mentee, timezone_first)[0].mentor.person_id == "near"
    strict = ProgramConfig.of(
        ProgramConfigured(program_id="p", rules=ProgramRules(max_timezone_difference_hours=2))
    )
    assert [c.mentor.person_id for c in rank(pool, mentee, strict)] == ["near"]


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("  Public-Speaking ", "public speaking"),
        ("ML", "machine learning"),
        ("public_speaking", "public speaking"),
        ("Presentation skills", "public speaking"),
        ("Prise de parole en public", "public speaking"),
        ("K8s", "kubernetes"),
        ("Underwater Basket-Weaving", "underwater basket weaving"),  # unknown: its own topic
    ],
)
def test_topic_names_are_normalised(typed: str, canonical: str) -> None:
    assert DEFAULT.key(typed) == canonical


@settings(max_examples=150, deadline=None)
@given(
    st.lists(mentors, min_size=1, max_size=12).map(unique_by_id),
    st.lists(mentees, min_size=1, max_size=6),
    rules,
    st.lists(st.sampled_from(["keep", "free", "fewer places"]), min_size=6, max_size=6),
)
def test_a_pool_that_served_other_mentees_and_changed_places_scores_like_a_fresh_one(
    pool: list[Mentor], waiting: list[Mentee], rule: ProgramRules, changes: list[str]
) -> None:
    """What a pool keeps between mentees (each fact's criteria, loads as places are taken or
    given back, capacities as they change) never changes a result: the same candidates, scores
    and values, to the last bit, as a pool just read with those loads and capacities."""
    config = ProgramConfig(rules=rule)
    kept = MentorPool(pool, NOW)
    load = {m.person_id: m.load for m in pool}
    capacity = {m.person_id: m.capacity for m in pool}
    for mentee, change in zip(waiting, changes, strict=False):
        fresh = MentorPool(
            [replace(m, load=load[m.person_id], capacity=capacity[m.person_id]) for m in pool], NOW
        )
        got = best_or_reason(kept, mentee, config)
        assert seen(got) == seen(best_or_reason(fresh, mentee, config))
        ranked = rank(kept, mentee, config, limit=50)
        assert [seen(c) for c in ranked] == [seen(c) for c in rank(fresh, mentee, config, limit=50)]
        if isinstance(got, Candidate):
            mentor = got.mentor.person_id
            kept.take_slot(mentor)
            load[mentor] += 1
            if change == "free":
                kept.free_slot(mentor)
                load[mentor] -= 1
            elif change == "fewer places":
                kept.change_capacity(mentor, -1)
                capacity[mentor] -= 1
        assert kept.load_value.tobytes() == fresh_load(kept).tobytes()


def seen(result: Candidate | str) -> object:
    """What a result says (the mentor by id: the fresh pool's records carry the new load)."""
    if isinstance(result, str):
        return result
    return result.mentor.person_id, result.score, result.values, result.load


def fresh_load(pool: MentorPool) -> np.ndarray:
    return criteria.load(pool.load, pool.capacity)


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_ties_go_to_the_smallest_mentor_id_whatever_the_pool_order(limit: int) -> None:
    """Equal mentors score alike: the first `limit` by id are chosen, wherever they sit."""
    twins = [
        Mentor(person_id=f"m{i}", languages=("en",), timezone="Europe/Paris",
               expertise=(("python", 4),), capacity=2)
        for i in (5, 3, 9, 1, 7)
    ]  # fmt: skip
    mentee = Mentee(person_id="n1", languages=("en",), timezone="Europe/Paris",
                    goals=(("python", 1),))  # fmt: skip
    config = ProgramConfig()
    for order in (twins, twins[::-1], twins[2:] + twins[:2]):
        ranked = rank(MentorPool(order, NOW), mentee, config, limit=limit)
        assert [c.mentor.person_id for c in ranked] == ["m1", "m3", "m5"][:limit]
        best = best_or_reason(MentorPool(order, NOW), mentee, config)
        assert isinstance(best, Candidate) and best.mentor.person_id == "m1"
