"""Contract v1 only grows: the committed schemas in docs/schemas/v1 and the checker that guards them.

A narrowing (a message valid yesterday refused today) fails here; growth only asks for
`make schemas-snapshot`, so the recorded contract and the code never drift apart.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field, create_model
from typer.testing import CliRunner

from shared.contract.events import EVENT_MODELS, MenteeRegistered, MentorRegistered
from shared.contract.schemas import event_schema
from shared.ops.cli.main import app
from shared.ops.compat import (
    compare,
    compare_contracts,
    load_snapshot,
    narrowings,
    stale_files,
    write_snapshot,
)

pytestmark = pytest.mark.unit

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "v1"
Schema = dict[str, Any]
Style = Literal["directive", "coaching"]


# --- the contract against its snapshot ---------------------------------------------------------


def test_the_contract_narrows_nothing_against_the_snapshot() -> None:
    problems, _ = compare(SNAPSHOT)
    assert problems == [], (
        "contract v1 only grows (docs/contract.md); these changes would refuse messages that "
        "were valid before:\n" + "\n".join(problems)
    )


def test_the_snapshot_is_up_to_date() -> None:
    stale = stale_files(SNAPSHOT)
    _, growth = compare(SNAPSHOT)
    assert stale == [], (
        f"docs/schemas/v1 differs from the contract in {', '.join(stale)}; if this is growth, "
        "record it with `make schemas-snapshot` and commit docs/schemas/v1. What changed:\n"
        + "\n".join(growth)
    )


def test_the_snapshot_has_one_file_per_event_as_event_schema_renders_it(tmp_path: Path) -> None:
    assert sorted(load_snapshot(SNAPSHOT)) == sorted(EVENT_MODELS)
    for path in write_snapshot(tmp_path):
        event = path.name.removesuffix(".schema.json")
        assert path.read_text() == json.dumps(event_schema(event), indent=2) + "\n"


def test_writing_the_snapshot_deletes_the_files_of_events_gone(tmp_path: Path) -> None:
    (tmp_path / "retired-event.schema.json").write_text("{}\n")
    write_snapshot(tmp_path)
    assert not (tmp_path / "retired-event.schema.json").exists()


# --- the checker on mutated copies of the real schemas -------------------------------------------


def mutated(event: str, change: Callable[[Schema], None]) -> tuple[Schema, Schema]:
    """The committed schema of `event` and a copy changed by `change`."""
    old = load_snapshot(SNAPSHOT)[event]
    new = copy.deepcopy(old)
    change(new)
    return old, new


def data(schema: Schema) -> Schema:
    payload: Schema = schema["properties"]["data"]
    return payload


def prop(schema: Schema, name: str) -> Schema:
    field: Schema = data(schema)["properties"][name]
    return field


def rename_display_name(s: Schema) -> None:
    props = data(s)["properties"]
    props["full_name"] = props.pop("display_name")
    required = data(s)["required"]
    required[required.index("display_name")] = "full_name"


def drop_null(s: Schema) -> None:
    field = prop(s, "department")
    field.update(field.pop("anyOf")[0])


NARROWINGS: list[tuple[str, Callable[[Schema], None], str]] = [
    (
        "mentor-registered",
        lambda s: prop(s, "capacity").update(maximum=40),
        "mentor-registered: data.capacity: maximum lowered from 50 to 40",
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "capacity").update(minimum=2),
        "mentor-registered: data.capacity: minimum raised from 1 to 2",
    ),
    (
        "mentor-registered",
        lambda s: data(s)["properties"].pop("department"),
        "mentor-registered: data.department: property removed",
    ),
    (
        "mentor-registered",
        rename_display_name,
        "mentor-registered: data.display_name: property removed (renamed? added here: full_name)\n"
        "mentor-registered: data.full_name: newly required",
    ),
    (
        "mentor-registered",
        lambda s: data(s)["required"].append("department"),
        "mentor-registered: data.department: newly required",
    ),
    (
        "mentor-registered",
        drop_null,
        "mentor-registered: data.department: null no longer allowed",
    ),
    (
        "program-configured",
        lambda s: prop(s, "response_deadline_hours").update(type="integer"),
        "program-configured: data.response_deadline_hours: type narrowed from number to integer",
    ),
    (
        "program-configured",
        lambda s: prop(s, "mode").update(enum=["continuous"]),
        'program-configured: data.mode: enum values removed: "cohort"',
    ),
    (
        "program-configured",
        lambda s: prop(s, "stall_after_days").update(exclusiveMinimum=1),
        "program-configured: data.stall_after_days: exclusiveMinimum raised from 0 to 1",
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "display_name").update(maxLength=100),
        "mentor-registered: data.display_name: maxLength lowered from 200 to 100",
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "languages").update(maxItems=5),
        "mentor-registered: data.languages: maxItems lowered from 20 to 5",
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "person_id").update(pattern="^[a-z]+$"),
        'mentor-registered: data.person_id: pattern changed from "^[A-Za-z0-9][A-Za-z0-9._:@/-]*$" '
        'to "^[a-z]+$"',
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "timezone").update(format="uri"),
        'mentor-registered: data.timezone: format "uri" added',
    ),
    (
        "mentor-registered",
        lambda s: s["properties"]["type"].update(const="mentor-enrolled"),
        'mentor-registered: type: const changed from "mentor-registered" to "mentor-enrolled"',
    ),
    (
        "mentor-registered",
        lambda s: data(s).update(additionalProperties=False),
        "mentor-registered: data: additionalProperties turned false",
    ),
    (
        "mentor-registered",  # inside a $ref: the path names where the model is used
        lambda s: s["$defs"]["Expertise"]["properties"]["level"].update(maximum=3),
        "mentor-registered: data.expertise[].level: maximum lowered from 5 to 3",
    ),
    (
        "mentor-registered",  # the envelope is part of the contract too
        lambda s: s["properties"]["source"].update(maxLength=64),
        "mentor-registered: source: maxLength lowered from 256 to 64",
    ),
]


@pytest.mark.parametrize(
    ("event", "change", "expected"),
    NARROWINGS,
    ids=[n[2].split("\n")[0].split(": ", 1)[1] for n in NARROWINGS],
)
def test_a_narrowing_is_reported(
    event: str, change: Callable[[Schema], None], expected: str
) -> None:
    old, new = mutated(event, change)
    assert narrowings(old, new) == expected.split("\n")


def test_an_event_removed_is_a_narrowing() -> None:
    old = load_snapshot(SNAPSHOT)
    new = {event: schema for event, schema in old.items() if event != "match-ended"}
    problems, _ = compare_contracts(old, new)
    assert problems == ["match-ended: event removed"]


def add_optional(s: Schema) -> None:
    data(s)["properties"]["nickname"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    s["$defs"]["Expertise"]["properties"]["since"] = {"type": "integer"}


def allow_null(s: Schema) -> None:
    data(s)["properties"]["display_name"] = {
        "anyOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "null"}],
        "title": "Display Name",
    }


WIDENINGS: list[tuple[str, Callable[[Schema], None], str]] = [
    (
        "mentor-registered",
        add_optional,
        "mentor-registered: data.nickname: optional property added",
    ),
    (
        "program-configured",
        lambda s: prop(s, "mode")["enum"].append("rolling"),
        'program-configured: data.mode: enum values added: "rolling"',
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "capacity").update(maximum=100),
        "mentor-registered: data.capacity: maximum raised from 50 to 100",
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "capacity").update(minimum=0),
        "mentor-registered: data.capacity: minimum lowered from 1 to 0",
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "capacity").update(type="number"),
        "mentor-registered: data.capacity: type widened from integer to number",
    ),
    (
        "mentor-registered",
        allow_null,
        "mentor-registered: data.display_name: now also accepts null",
    ),
    (
        "mentor-registered",
        lambda s: data(s)["required"].remove("email"),
        "mentor-registered: data.email: no longer required",
    ),
    (
        "mentor-registered",
        lambda s: prop(s, "person_id").pop("pattern"),
        'mentor-registered: data.person_id: pattern "^[A-Za-z0-9][A-Za-z0-9._:@/-]*$" removed',
    ),
]


@pytest.mark.parametrize(
    ("event", "change", "expected"), WIDENINGS, ids=[w[2].split(": ", 1)[1] for w in WIDENINGS]
)
def test_growth_is_no_narrowing(
    event: str, change: Callable[[Schema], None], expected: str
) -> None:
    old, new = mutated(event, change)
    problems, growth = compare_contracts({event: old}, {event: new})
    assert problems == []
    assert expected in growth


def test_a_new_event_is_growth() -> None:
    old = load_snapshot(SNAPSHOT)
    new = {**old, "mentor-paused": old["mentor-availability"]}
    assert compare_contracts(old, new) == ([], ["mentor-paused: event added"])


def test_a_recursive_model_is_compared_and_terminates() -> None:
    def tree(max_length: int) -> Schema:
        node = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": max_length},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
            },
        }
        return {
            "properties": {"type": {"const": "tree-drawn"}, "data": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": node},
        }

    assert narrowings(tree(10), tree(10)) == []
    assert narrowings(tree(10), tree(5)) == [
        "tree-drawn: data.name: maxLength lowered from 10 to 5"
    ]


# --- the whole chain: a pydantic model, event_schema, the checker ----------------------------------


def test_a_tighter_model_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    tighter = create_model(
        "MentorRegistered",
        __base__=MentorRegistered,
        capacity=(int, Field(ge=1, le=40, description="mentees at once in this program")),
    )
    monkeypatch.setitem(EVENT_MODELS, "mentor-registered", tighter)
    problems, _ = compare(SNAPSHOT)
    assert problems == ["mentor-registered: data.capacity: maximum lowered from 50 to 40"]


def test_a_model_that_grows_passes_the_check_but_asks_for_a_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grown = create_model(
        "MenteeRegistered",
        __base__=MenteeRegistered,
        mentoring_style=(Style | None, None),
    )
    monkeypatch.setitem(EVENT_MODELS, "mentee-registered", grown)
    problems, growth = compare(SNAPSHOT)
    assert problems == []
    assert "mentee-registered: data.mentoring_style: optional property added" in growth
    assert stale_files(SNAPSHOT) == ["mentee-registered.schema.json"]


# --- the command line --------------------------------------------------------------------------


def test_schemas_check_says_compatible_or_lists_narrowings(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["schemas", "check", str(SNAPSHOT)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("compatible")

    _, new = mutated("mentor-registered", lambda s: prop(s, "capacity").update(maximum=60))
    write_snapshot(tmp_path)
    (tmp_path / "mentor-registered.schema.json").write_text(json.dumps(new, indent=2) + "\n")
    result = runner.invoke(app, ["schemas", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "mentor-registered: data.capacity: maximum lowered from 60 to 50" in result.output

    result = runner.invoke(app, ["schemas", "snapshot", str(tmp_path)])
    assert result.exit_code == 1, "a narrowing is not recorded without --allow-narrowing"
    assert json.loads((tmp_path / "mentor-registered.schema.json").read_text()) == new
