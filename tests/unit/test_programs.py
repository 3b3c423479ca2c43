"""`mentornet program configure`'s pure side: reading YAML and JSON, the contract's errors named by
field (and line), the event it would publish, and the diff against the configuration in force;
and `show`'s words for the weights in force and why mentees wait."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from services.matching.domain.config import DEFAULT_WEIGHTS, LearnedWeights, ProgramConfig
from shared.contract.envelope import STRUCTURED, decode_record
from shared.contract.events import ProgramConfigured, WaitingReason
from shared.ops.analytics import NOT_TRIED, WAITING_REASONS
from shared.ops.programs import (
    SOURCE,
    TOPIC,
    Change,
    Document,
    InForce,
    Kind,
    Overview,
    ProgramError,
    changes_against,
    diff,
    load_file,
    parse,
    prepare,
    settings_of,
    show_value,
    validate,
    waiting_words,
    weights_words,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "samples" / "program.yaml"

YAML = """\
program_id: leaders-2026
weights:
  topic_fit: 0.5
rules:
  department: cross
checkin_days: [60, 14]
"""


def config(text: str, kind: Kind = "yaml") -> ProgramConfigured:
    return validate(parse(text, kind, f"program.{kind}"))


def error_of(text: str, kind: Kind = "yaml") -> str:
    with pytest.raises(ProgramError) as caught:
        config(text, kind)
    return str(caught.value)


# --- reading --------------------------------------------------------------------------------------


def test_yaml_and_json_give_the_same_configuration() -> None:
    as_json = json.dumps(
        {
            "program_id": "leaders-2026",
            "weights": {"topic_fit": 0.5},
            "rules": {"department": "cross"},
            "checkin_days": [60, 14],
        },
        indent=2,
    )
    from_yaml, from_json = config(YAML), config(as_json, "json")
    assert from_yaml == from_json
    assert from_yaml.weights == {"topic_fit": 0.5}
    assert from_yaml.rules.department == "cross"
    assert from_yaml.checkin_days == [14, 60]  # the contract sorts them


def test_the_file_kind_comes_from_its_extension(tmp_path: Path) -> None:
    for name in ("p.yaml", "p.YML", "p.json"):
        path = tmp_path / name
        path.write_text('{"program_id": "p"}')  # JSON is YAML too
        assert validate(load_file(path)).program_id == "p"
    with pytest.raises(ProgramError, match=r"unknown extension '\.toml'"):
        load_file(tmp_path / "p.toml")
    with pytest.raises(ProgramError, match="No such file"):
        load_file(tmp_path / "missing.yaml")


def test_the_sample_is_valid_and_changes_what_its_comments_say() -> None:
    sample = validate(load_file(SAMPLE))
    changed = {c.setting for c in changes_against(InForce(ProgramConfig(), None), sample)}
    assert changed == {
        "weights.topic_fit",
        "weights.timezone",
        "weights.department",
        "rules.max_timezone_difference_hours",
        "rules.department",
        "rules.min_seniority_gap",
        "response_deadline_hours",
        "checkin_days",
        "stall_after_days",
    }


def test_syntax_errors_name_the_line_and_column() -> None:
    message = error_of("program_id: p\nmode: [cohort\n")
    assert message.startswith("program.yaml line 3 column 1: not valid YAML:")
    assert "flow sequence at line 2 column 7" in message  # where the bracket was opened
    message = error_of('{"program_id": "p",\n "mode": "cohort",\n}', "json")
    assert message.startswith("program.json line 3 column 1: not valid JSON:")


def test_a_key_given_twice_is_refused_not_silently_overwritten() -> None:
    assert "line 3 column 1" in error_of("program_id: p\nmode: cohort\nmode: continuous\n")
    assert "'mode' is given twice" in error_of(
        '{"program_id": "p", "mode": "cohort", "mode": "continuous"}', "json"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "found nothing"),
        ("- a\n- b\n", "found a list"),
        ("just words", "found a str"),
    ],
)
def test_the_settings_must_be_a_mapping(text: str, expected: str) -> None:
    assert expected in error_of(text)


# --- the contract ---------------------------------------------------------------------------------


def test_contract_errors_name_each_field_path_and_its_line() -> None:
    message = error_of(
        "program_id: leaders-2026\n"  # 1
        "weights:\n"  # 2
        "  topic_fitt: 0.5\n"  # 3
        "  load: lots\n"  # 4
        "rules:\n"  # 5
        "  department: sideways\n"  # 6
        "relationship_length_days: 100\n"  # 7
        "checkin_days: [30, 120]\n"  # 8
        "candidates: 0\n"  # 9
    )
    assert message.startswith("program.yaml: ")
    problems = message.removeprefix("program.yaml: ").split("; ")
    assert problems == [
        "line 3: 'weights.topic_fitt': not a criterion: Input should be 'topic_fit', "
        "'languages', 'timezone', 'seniority', 'department', 'reputation', 'load' or "
        "'mutual_learning'",
        "line 4: 'weights.load': Input should be a valid number, unable to parse string as a number",
        "line 6: 'rules.department': Input should be 'any', 'cross' or 'same'",
        "line 8: 'checkin_days': every check-in must come before relationship_length_days (100.0)",
        "line 9: 'candidates': Input should be greater than or equal to 1",
    ]


def test_json_errors_name_the_field_path_without_a_line() -> None:
    message = error_of(
        '{"program_id": "p", "rules": {"max_timezone_difference_hours": 30}}', "json"
    )
    assert message == (
        "program.json: 'rules.max_timezone_difference_hours': "
        "Input should be less than or equal to 24"
    )
    assert error_of('{"weights": {}}', "json") == "program.json: 'program_id': is required"


def test_an_unknown_setting_is_refused_with_a_suggestion() -> None:
    """The contract ignores unknown fields; a file written by hand with a typo must not silently
    leave the default in force."""
    message = error_of("program_id: p\nstall_after_day: 10\nrules:\n  max_tz: 3\n")
    assert "line 2: 'stall_after_day': not a setting (did you mean 'stall_after_days'?)" in message
    assert "line 4: 'rules.max_tz': not a setting" in message


def test_a_nested_error_deep_in_a_list_points_at_its_item() -> None:
    message = error_of("program_id: p\ncheckin_days:\n  - 10\n  - -3\n")
    assert message == "program.yaml: line 4: 'checkin_days.1': Input should be greater than 0"


# --- the event ------------------------------------------------------------------------------------


def test_the_event_passes_decode_record_with_the_registry_key() -> None:
    now = datetime(2026, 5, 4, 10, 0, 0, 123456, tzinfo=UTC)
    prepared = prepare(config(YAML), "acme", now)
    assert prepared.key == b"leaders-2026"  # the registry: program-configured is keyed program_id
    assert dict(prepared.headers)["content-type"] == STRUCTURED.encode()
    event = decode_record(prepared.value, prepared.headers, topic=TOPIC, key=prepared.key)
    assert (event.type, event.source, event.tenantid, event.time) == (TOPIC, SOURCE, "acme", now)
    assert event.data == config(YAML)
    assert prepare(config(YAML), "acme", now).event.id != event.id  # random: see prepare()


def test_a_bad_tenant_is_named() -> None:
    with pytest.raises(ProgramError, match="--tenant 'not a tenant'"):
        prepare(config(YAML), "not a tenant")


# --- the diff -------------------------------------------------------------------------------------


def configured(**settings: object) -> ProgramConfig:
    return ProgramConfig.of(ProgramConfigured.model_validate({"program_id": "p", **settings}))


def test_identical_configurations_have_no_diff() -> None:
    assert diff(ProgramConfig(), ProgramConfig()) == []
    assert diff(ProgramConfig(), configured()) == []
    # naming a default explicitly changes nothing matching applies
    assert (
        diff(configured(), configured(weights={"topic_fit": 0.4}, response_deadline_hours=72)) == []
    )


def test_a_changed_top_level_setting_is_listed_alone() -> None:
    old = configured(mode="continuous", stall_after_days=14)
    assert diff(old, configured(mode="cohort", stall_after_days=14)) == [
        Change("mode", "continuous", "cohort")
    ]


def test_nested_weights_and_rules_are_compared_one_by_one() -> None:
    old = configured(weights={"topic_fit": 0.5}, rules={"department": "cross"})
    new = configured(
        weights={"topic_fit": 0.5, "load": 0.2},
        rules={"department": "cross", "min_seniority_gap": 2},
    )
    assert diff(old, new) == [
        Change("weights.load", 0.1, 0.2),
        Change("rules.min_seniority_gap", None, 2),
    ]
    # a weight left out goes back to its default: that is a change too
    assert diff(old, configured(rules={"department": "cross"})) == [
        Change("weights.topic_fit", 0.5, DEFAULT_WEIGHTS["topic_fit"])
    ]


def test_check_ins_are_compared_as_matching_applies_them() -> None:
    """Left out, check-ins are the defaults below the relationship's length: a shorter
    relationship drops the check-in at 90 days, and the diff says so."""
    assert diff(ProgramConfig(), configured(relationship_length_days=60)) == [
        Change("relationship_length_days", 180.0, 60),
        Change("checkin_days", [30.0, 90.0], [30.0]),
    ]


def test_settings_are_flat_and_complete() -> None:
    flat = settings_of(ProgramConfig())
    assert [k for k in flat if k.startswith("weights.")] == [
        f"weights.{c}" for c in DEFAULT_WEIGHTS
    ]
    assert flat["rules.department"] == "any" and flat["checkin_days"] == [30.0, 90.0]
    assert {"response_deadline_hours", "mode", "candidates", "stall_after_days"} <= set(flat)


def test_values_read_as_a_person_writes_them() -> None:
    assert [show_value(v) for v in (72.0, 0.05, None, [14.0, 60.0], [], "cross", 20)] == [
        "72",
        "0.05",
        "none",
        "14, 60",
        "none",
        "cross",
        "20",
    ]


def test_a_document_finds_lines_of_nested_fields() -> None:
    document = parse(YAML, "yaml", "p.yaml")
    assert isinstance(document, Document)
    assert document.line_of(("rules", "department")) == 5
    assert document.line_of(("checkin_days", 1)) == 6
    assert document.line_of(("nowhere",)) is None


# --- topics, learning and waiting -----------------------------------------------------------------


def uncommented(text: str) -> str:
    """The sample with its commented settings in use: below its header, `# key:` and indented
    `#   ...` lines lose their `# `; prose comments (a word then a space) stay."""
    header, settings = text.split("\nprogram_id:", 1)
    return f"{header}\nprogram_id:" + re.sub(
        r"^(\s*)# (?=[a-z_]+:|\s)", r"\1", settings, flags=re.MULTILINE
    )


def test_the_sample_s_commented_settings_are_valid_and_change_what_they_say() -> None:
    sample = validate(parse(uncommented(SAMPLE.read_text()), "yaml", "program.yaml"))
    assert sample.learning == "on" and sample.rules.min_topic_fit == 0.2
    (topic,) = sample.topics
    in_force = InForce(ProgramConfig.of(validate(load_file(SAMPLE))), datetime.now(UTC))
    assert {c.setting: c.new for c in changes_against(in_force, sample)} == {
        "rules.min_topic_fit": 0.2,
        "learning": "on",
        "weight_bounds.topic_fit": {"min": 0.3, "max": 0.7},
        "weight_bounds.timezone": {"min": 0.05, "max": 0.3},
        "learning_min_outcomes": 300,
        f"topics.{topic.topic}": {
            "names": {"fr": "systèmes de design"},
            "aliases": ["component libraries"],
            "broader": ["design"],
            "related": ["user interface"],
        },
    }


def test_bounds_are_compared_as_matching_applies_them() -> None:
    """A bound left out is 0 to 1: naming it changes nothing; one changed is listed alone."""
    assert diff(configured(), configured(weight_bounds={"load": {"min": 0, "max": 1}})) == []
    old = configured(learning="on", weight_bounds={"timezone": {"min": 0.1}})
    assert diff(old, configured(learning="on", weight_bounds={"timezone": {"min": 0.2}})) == [
        Change("weight_bounds.timezone", {"min": 0.1, "max": 1}, {"min": 0.2, "max": 1})
    ]


def test_topics_are_compared_one_by_one_and_a_dropped_one_is_listed() -> None:
    talks = {"topic": "talks", "related": ["public speaking"]}
    old = InForce(
        configured(topics=[talks]),
        datetime.now(UTC),
        tuple(ProgramConfigured.model_validate({"program_id": "p", "topics": [talks]}).topics),
    )
    same = ProgramConfigured.model_validate({"program_id": "p", "topics": [talks]})
    assert changes_against(old, same) == []
    other = {"topic": "design systems", "broader": ["design"]}
    changed = ProgramConfigured.model_validate(
        {"program_id": "p", "topics": [{**talks, "aliases": ["keynotes"]}, other]}
    )
    assert changes_against(old, changed) == [
        Change(
            "topics.talks",
            {"related": ["public speaking"]},
            {"aliases": ["keynotes"], "related": ["public speaking"]},
        ),
        Change("topics.design systems", None, {"broader": ["design"]}),
    ]
    dropped = ProgramConfigured.model_validate({"program_id": "p"})
    assert changes_against(old, dropped) == [
        Change("topics.talks", {"related": ["public speaking"]}, None)
    ]


def test_unknown_fields_of_bounds_and_topics_are_refused() -> None:
    message = error_of(
        "program_id: p\n"  # 1
        "weight_bounds:\n"  # 2
        "  timezone: {mn: 0.1}\n"  # 3
        "  load: {min: 0.5, max: 0.2}\n"  # 4
        "topics:\n"  # 5
        "  - topic: talks\n"  # 6
        "    alias: [keynotes]\n"  # 7
    )
    assert "line 3: 'weight_bounds.timezone.mn': not a setting (did you mean 'min'?)" in message
    assert "line 4: 'weight_bounds.load.max': must be at least min (0.5)" in message
    assert "line 7: 'topics.0.alias': not a setting (did you mean 'aliases'?)" in message


def test_learned_weights_and_the_taxonomy_are_not_settings() -> None:
    taught = LearnedWeights(dict(DEFAULT_WEIGHTS), dict(DEFAULT_WEIGHTS), 50, True)
    flat = settings_of(configured(learning="on", topics=[{"topic": "talks"}]).with_learned(taught))
    assert not {"learned", "taxonomy"} & set(flat)
    assert [k for k in flat if k.startswith("weight_bounds.")] == [
        f"weight_bounds.{c}" for c in DEFAULT_WEIGHTS
    ]
    assert flat["learning"] == "on" and flat["learning_min_outcomes"] == 200
    assert show_value(flat["weight_bounds.load"]) == "min: 0; max: 1"


def test_waiting_mentees_are_counted_by_reason_in_plain_words() -> None:
    reasons = dict.fromkeys(get_args(WaitingReason), 0) | {NOT_TRIED: 0}
    assert waiting_words(reasons) == "0 waiting"
    reasons |= {"no_free_place": 5, "no_topic": 7}
    assert waiting_words(reasons) == "12 waiting: 7 no mentor covers a goal, 5 no free place"
    assert set(WAITING_REASONS) == set(reasons), "every reason has its words"


def learned(outcomes: int, in_force: bool) -> LearnedWeights:
    weights = dict.fromkeys(DEFAULT_WEIGHTS, 0.0) | {"timezone": 1.0}
    return LearnedWeights(weights, weights, outcomes, in_force)


def test_the_weights_in_force_are_named_with_the_outcomes_behind_them() -> None:
    on = configured(learning="on", learning_min_outcomes=40)
    assert weights_words(configured()) == "weights in force: as configured (learning off)"
    assert weights_words(on) == (
        "weights in force: as configured (learning on: 40 outcomes needed, none learned from yet)"
    )
    assert weights_words(on.with_learned(learned(25, False))) == (
        "weights in force: as configured (learning on: 40 outcomes needed, 25 so far)"
    )
    assert weights_words(on.with_learned(learned(60, True))) == (
        "weights in force: learned from 60 outcomes, within the bounds (learning on; 40 needed)"
    )
    assert weights_words(configured().with_learned(learned(60, True))) == (
        "weights in force: as configured (learning off; what 60 outcomes taught is ignored)"
    )


def overview(config: ProgramConfig, reasons: dict[str, int]) -> Overview:
    return Overview(
        "acme",
        "p",
        InForce(config, datetime(2026, 5, 4, tzinfo=UTC)),
        {"enrolled": 0},
        [],
        {"enrolled": 3, "waiting": 3},
        {"matches": 0, "open_proposals": 0, "oldest_proposed_at": None, "next_expiry": None}
        | {"active_relationships": 0, "ended_relationships": 0},
        reasons,
        datetime(2026, 5, 5, tzinfo=UTC),
    )


def test_show_s_json_has_the_weights_in_force_the_learning_and_the_waiting_reasons() -> None:
    on = configured(learning="on", learning_min_outcomes=40).with_learned(learned(60, True))
    figures = overview(on, {"no_topic": 2, NOT_TRIED: 1}).as_json()
    assert figures["configuration"]["weights_in_force"]["timezone"] == 1.0
    assert figures["configuration"]["weight_shares"]["timezone"] == 1.0
    assert figures["configuration"]["settings"]["weights.timezone"] == 0.1  # as configured
    assert figures["learning"] == {
        "learning": "on",
        "learned_weights_in_force": True,
        "min_outcomes": 40,
        "outcomes": 60,
        "learned_at": "2026-05-05T00:00:00Z",
        "weights": learned(60, True).weights,
        "learned": learned(60, True).learned,
    }
    assert figures["mentees"]["waiting_reasons"] == {"no_topic": 2, NOT_TRIED: 1}
    off = overview(configured().with_learned(learned(60, True)), {}).as_json()
    assert off["learning"]["learned_weights_in_force"] is False
    assert off["configuration"]["weights_in_force"] == configured().weights


def test_on_and_off_are_words_in_yaml_not_booleans() -> None:
    """YAML 1.1 reads `on` as true: `learning: on` would be refused as not 'off' or 'on'."""
    assert config("program_id: p\nlearning: on\n").learning == "on"
    assert config("program_id: p\nlearning: off\n").learning == "off"
    assert parse("a: true\nb: False\nc: yes\n", "yaml", "x.yaml").data == {
        "a": True,
        "b": False,
        "c": "yes",
    }
