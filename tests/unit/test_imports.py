"""`mentornet import`'s checks (shared.ops.imports): cells to contract JSON, every kind of bad
cell named by line and column, broken files, duplicates, JSON lines, content-derived ids, and the
sample files of the docs. The real broker and profiles are in tests/integration/test_import.py."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shared.contract.envelope import STRUCTURED, Rejected, decode_record
from shared.local.stack import REPO_ROOT
from shared.ops.cli.main import app
from shared.ops.imports import (
    SOURCE,
    Checked,
    Format,
    ImportRefused,
    Record,
    Role,
    check,
    columns,
    detect_format,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
SAMPLES = REPO_ROOT / "docs" / "samples"


def mentor(person: str = "p-1", **cells: str) -> dict[str, str]:
    return {
        "person_id": person,
        "display_name": "Ada Lovelace",
        "email": f"{person}@acme.example",
        "languages": "en;fr",
        "timezone": "Europe/Paris",
        "department": "engineering",
        "seniority": "8",
        "manager_id": "",
        "expertise": "python:5;public speaking:4",
        "capacity": "2",
        **cells,
    }


def mentee(person: str = "n-1", **cells: str) -> dict[str, str]:
    row = {k: v for k, v in mentor(person).items() if k not in ("expertise", "capacity")}
    return {**row, "goals": "leadership:1;python:2", **cells}


def csv_file(*rows: dict[str, str]) -> bytes:
    """A CSV file as a spreadsheet writes it: header on line 1, data from line 2."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def checked(
    raw: bytes,
    file_format: Format = "csv",
    role: Role = "mentor",
    tenant: str = "acme",
    now: datetime = NOW,
    **kwargs: Any,
) -> Checked:
    return check(
        raw, file_format, role=role, tenant=tenant, program="leaders-2026", now=now, **kwargs
    )


def problems(result: Checked) -> list[str]:
    return [str(p) for p in result.problems]


def data_of(result: Checked) -> list[dict[str, Any]]:
    """The `data` of each record, read back through the contract's own decoder."""
    found = []
    for r in result.records:
        event = decode_record(r.value, r.headers, topic=r.topic, key=r.key)
        found.append(event.data.model_dump(mode="json", exclude_none=True))
    return found


# --- cells to the contract's JSON ----------------------------------------------------------------


def test_lists_and_pairs_become_the_contracts_json() -> None:
    row = mentor(
        languages=" en ; FR ;",
        expertise="python:4; public speaking:3;c++: advanced:2",
        department="",
        seniority="7",
    )
    result = checked(csv_file(row))
    assert result.problems == () and result.rows == 1
    (data,) = data_of(result)
    assert data == {
        "person_id": "p-1",
        "program_id": "leaders-2026",  # from --program
        "display_name": "Ada Lovelace",
        "email": "p-1@acme.example",
        "languages": ["en", "fr"],
        "timezone": "Europe/Paris",
        "seniority": 7,  # an empty cell (department, manager_id) is an absent field
        "expertise": [
            {"topic": "python", "level": 4},
            {"topic": "public speaking", "level": 3},
            {"topic": "c++: advanced", "level": 2},  # the last colon splits
        ],
        "capacity": 2,
    }


def test_a_record_is_a_structured_cloudevent_keyed_by_tenant_and_person() -> None:
    (record,) = checked(csv_file(mentor("p-7")), tenant="globex").records
    assert (record.topic, record.key, record.line) == ("mentor-registered", b"globex:p-7", 2)
    assert dict(record.headers)["content-type"] == STRUCTURED.encode()
    event = json.loads(record.value)
    assert event["source"] == SOURCE and event["type"] == "mentor-registered"
    assert event["tenantid"] == "globex" and event["id"] == record.event_id
    assert event["time"] == "2026-05-04T08:30:00Z"


def test_mentee_goals_are_topic_priority_pairs() -> None:
    result = checked(csv_file(mentee(goals="leadership:1;python:2")), role="mentee")
    (record,) = result.records
    assert record.topic == "mentee-registered"
    assert data_of(result)[0]["goals"] == [
        {"topic": "leadership", "priority": 1},
        {"topic": "python", "priority": 2},
    ]


def test_what_people_would_learn_or_share_are_optional_topic_lists() -> None:
    """Reverse mentoring: a mentor's `learning_interests` and a mentee's `offers`, `;`-separated
    like the other lists; a blank cell (or only separators) is an absent field."""
    result = checked(csv_file(mentor("p-1", learning_interests=" tiktok ; data viz;")))
    assert data_of(result)[0]["learning_interests"] == ["tiktok", "data viz"]
    result = checked(csv_file(mentee("n-1", offers="spanish;excel")), role="mentee")
    assert data_of(result)[0]["offers"] == ["spanish", "excel"]
    for blank in ("", " ; "):
        (data,) = data_of(checked(csv_file(mentee("n-2", offers=blank)), role="mentee"))
        assert "offers" not in data
    # each is its role's own: in the other role's file, an unknown column, ignored
    other = checked(csv_file(mentor("p-2", offers="spanish")))
    assert other.ignored_columns == ("offers",) and "offers" not in data_of(other)[0]


@pytest.mark.parametrize(
    ("role", "column", "cell", "reason"),
    [
        ("mentor", "learning_interests", "x" * 101, "is longer than 100 characters"),
        ("mentee", "offers", ";".join(f"t{i}" for i in range(21)), "21 items; at most 20"),
    ],
)
def test_a_bad_learning_interest_or_offer_is_named_by_line_and_column(
    role: Role, column: str, cell: str, reason: str
) -> None:
    row = (mentor if role == "mentor" else mentee)("x-1", **{column: cell})
    result = checked(csv_file(row), role=role)
    [problem] = problems(result)
    assert problem.startswith(f"line 2, column {column}: ") and problem.endswith(reason)
    assert result.records == ()


# --- bad cells: each named by line and column ------------------------------------------------------

BAD_MENTOR_CELLS = [
    ("expertise", "python:9", "'python:9': level must be between 1 and 5"),
    ("expertise", "python:4;sql", "'sql': write topic:level, e.g. 'python:4'"),
    ("expertise", "python:high", "'python:high': level must be a whole number"),
    ("expertise", ":3", "':3': topic is empty"),
    ("expertise", "", "required, but the cell is empty"),
    (
        "languages",
        "en;klingon",
        "'klingon' is not an ISO 639-1 language code (two letters, e.g. 'en', 'fr')",
    ),
    ("languages", ";", "required, but the cell is empty"),
    ("timezone", "Paris", "'Paris' is not an IANA timezone name (e.g. 'Europe/Paris')"),
    ("email", "ada@acme", "'ada@acme': not an email address"),
    ("seniority", "12", "'12': must be between 1 and 10"),
    ("seniority", "senior", "'senior': must be a whole number"),
    ("capacity", "0", "'0': must be between 1 and 50"),
    ("capacity", "2.5", "'2.5': must be a whole number"),
    (
        "person_id",
        "p 1",
        "'p 1': may hold only letters, digits and ._:@/- and must start with a letter or digit",
    ),
    (
        "manager_id",
        "-boss",
        "'-boss': may hold only letters, digits and ._:@/- and must start with a letter or digit",
    ),
    ("display_name", "  ", "required, but the cell is empty"),
    ("display_name", "x" * 201, f"'{'x' * 59}…': is longer than 200 characters"),
]


@pytest.mark.parametrize(("column", "cell", "reason"), BAD_MENTOR_CELLS)
def test_a_bad_mentor_cell_is_named_by_line_and_column(column: str, cell: str, reason: str) -> None:
    result = checked(csv_file(mentor("p-1"), mentor("p-2", **{column: cell}), mentor("p-3")))
    assert problems(result) == [f"line 3, column {column}: {reason}"]
    assert [r.line for r in result.records] == [2, 4] and result.invalid_rows == 1


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("leadership:4", "'leadership:4': priority must be between 1 and 3"),
        ("leadership", "'leadership': write topic:priority, e.g. 'leadership:1'"),
        ("", "required, but the cell is empty"),
    ],
)
def test_a_bad_mentee_goal_is_named_by_line_and_column(cell: str, reason: str) -> None:
    result = checked(csv_file(mentee("n-1", goals=cell)), role="mentee")
    assert problems(result) == [f"line 2, column goals: {reason}"]
    assert result.records == ()


def test_every_problem_of_every_row_is_listed_in_file_order() -> None:
    rows = [mentor(f"p-{i}") for i in range(6)]
    rows[1] = mentor("p-1", expertise="python:9;sql:0", email="nope")
    rows[4] = mentor("p-4", capacity="51")
    result = checked(csv_file(*rows))
    assert problems(result) == [
        "line 3, column email: 'nope': not an email address",
        "line 3, column expertise: 'python:9': level must be between 1 and 5",
        "line 3, column expertise: 'sql:0': level must be between 1 and 5",
        "line 6, column capacity: '51': must be between 1 and 50",
    ]
    assert result.invalid_lines == (3, 6) and result.invalid_rows == 2
    assert [r.line for r in result.records] == [2, 4, 5, 7]


# --- the file as a whole --------------------------------------------------------------------------


def test_a_missing_required_column_refuses_the_file_before_any_row() -> None:
    rows = [{k: v for k, v in mentor().items() if k not in ("capacity", "timezone")}]
    with pytest.raises(ImportRefused, match=r"lacks the required column.* timezone, capacity"):
        checked(csv_file(*rows))
    with pytest.raises(ImportRefused, match="goals"):  # a mentor file imported as mentees
        checked(csv_file(mentor()), role="mentee")


def test_unknown_columns_are_ignored_and_reported_once() -> None:
    row = {"Notes ": "likes tea", **mentor(), "program_id": "other", "goals": "x:1"}
    result = checked(csv_file(row, {**row, "person_id": "p-2"}))
    assert result.problems == () and len(result.records) == 2
    assert result.ignored_columns == ("notes", "program_id", "goals")
    assert data_of(result)[0]["program_id"] == "leaders-2026"  # --program, not the column


def test_headers_are_read_whatever_their_case_and_spaces() -> None:
    raw = csv_file(mentor())
    header, rest = raw.split(b"\n", 1)
    raw = b",".join(b"  " + name.upper() for name in header.split(b",")) + b"\n" + rest
    assert len(checked(raw).records) == 1


def test_a_duplicate_person_names_both_lines_and_neither_is_published() -> None:
    rows = [mentor("p-1"), mentor("p-2"), mentor("p-3"), mentor("p-2", capacity="3")]
    result = checked(csv_file(*rows))
    assert problems(result) == [
        "line 3, column person_id: 'p-2' is also on line 5",
        "line 5, column person_id: 'p-2' is also on line 3",
    ]
    assert [r.line for r in result.records] == [2, 4]
    thrice = checked(csv_file(mentor("p-1"), mentor("p-1"), mentor("p-1")))
    assert str(thrice.problems[0]) == "line 2, column person_id: 'p-1' is also on lines 3, 4"
    assert thrice.records == ()


def test_broken_csv_lines_are_problems_of_their_rows_only() -> None:
    good = csv_file(mentor("p-1")).decode()
    header, first = good.splitlines()
    lines = [
        header,
        first,  # 2
        first.replace("p-1", "p-2") + ",extra",  # 3: one cell too many
        ",".join(first.replace("p-1", "p-3").split(",")[:-2]),  # 4: cells missing
        first.replace("p-1", "p-4").replace("Ada Lovelace", '"Ada" Lovelace'),  # 5
        first.replace("p-1", "p-5") + ",,,",  # 6: trailing empty cells are fine
        "",  # 7: blank lines are skipped
        first.replace("p-1", "p-6").replace("Ada Lovelace", '"Ada\nLovelace"'),  # 8 and 9
        first.replace("p-1", "p-7"),  # 10
        first.replace("p-1", "p-8").replace("Ada Lovelace", '"Ada Lovelace'),  # 11: never closed
        first.replace("p-1", "p-9"),  # 12: inside the unclosed cell
    ]
    result = checked("\r\n".join(lines).encode())
    assert problems(result) == [
        "line 3: 11 cells but the header has 10 columns (a cell that holds a comma must be in "
        "double quotes)",
        "line 4: 8 cells but the header has 10 columns",
        "line 5: not valid CSV: ',' expected after '\"'",
        "line 11: a double quote opened on this line is never closed (read up to line 12, the "
        "end of the file)",
    ]
    assert [r.line for r in result.records] == [2, 6, 8, 10]
    assert data_of(result)[2]["display_name"] == "Ada\nLovelace"


def test_bad_utf8_is_refused_on_its_line_and_a_bom_is_fine() -> None:
    raw = b"\xef\xbb\xbf" + csv_file(mentor("p-1"), mentor("p-2"), mentor("p-3"))
    latin1 = raw.replace(b"p-2,Ada Lovelace", "p-2,Hélène Lovelace".encode("latin-1"))
    result = checked(latin1)
    assert problems(result) == [
        "line 3: not valid UTF-8 (byte 0xe9 at position 6); save the file as UTF-8"
    ]
    assert [r.line for r in result.records] == [2, 4]
    with pytest.raises(ImportRefused, match=r"header .* not valid UTF-8"):
        checked("person_id,display_name,émail\n".encode("latin-1"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the file is empty"),
        (b'"person_id,display_name\n', "the header is not valid CSV"),
        (csv_file(mentor()).replace(b"department", b" Email"), "names email more than once"),
    ],
)
def test_an_unusable_file_is_refused_as_a_whole(raw: bytes, message: str) -> None:
    with pytest.raises(ImportRefused, match=message):
        checked(raw)


@pytest.mark.parametrize(
    ("option", "value"), [("tenant", "acme corp"), ("tenant", ""), ("program", "-x")]
)
def test_a_bad_tenant_or_program_refuses_the_file(option: str, value: str) -> None:
    given = {"tenant": "acme", "program": "leaders-2026", option: value}
    with pytest.raises(ImportRefused, match=f"--{option}"):
        check(
            csv_file(mentor()),
            "csv",
            role="mentor",
            tenant=given["tenant"],
            program=given["program"],
            now=NOW,
        )


def test_the_format_comes_from_the_extension_unless_given() -> None:
    assert detect_format(Path("people.CSV")) == "csv"
    assert detect_format(Path("people.jsonl")) == detect_format(Path("x.ndjson")) == "jsonl"
    assert detect_format(Path("people.txt"), "csv") == "csv"
    with pytest.raises(ImportRefused, match="--format"):
        detect_format(Path("people.txt"))


# --- JSON lines ------------------------------------------------------------------------------------


def test_json_lines_take_native_json_or_the_csv_texts() -> None:
    native = {
        "person_id": "n-1",
        "display_name": "Chloé Dubois",
        "email": "chloe@acme.example",
        "languages": ["fr", "EN"],
        "timezone": "Europe/Paris",
        "department": None,  # null: absent
        "seniority": 2,
        "goals": [{"topic": "python", "priority": 1}, "leadership:2"],
        "offers": ["spanish", "excel"],
        "hobbies": ["chess"],  # unknown: ignored, reported
    }
    texts = {
        **native,
        "person_id": "n-2",
        "languages": "fr;en",
        "goals": "python:1;leadership:2",
        "offers": "spanish;excel",
    }
    raw = "\n".join([json.dumps(native), "", json.dumps(texts, ensure_ascii=False)]).encode()
    result = checked(raw, "jsonl", role="mentee")
    assert result.problems == () and [r.line for r in result.records] == [1, 3]
    first, second = data_of(result)
    assert first["languages"] == second["languages"] == ["fr", "en"]
    assert (
        first["goals"]
        == second["goals"]
        == [
            {"topic": "python", "priority": 1},
            {"topic": "leadership", "priority": 2},
        ]
    )
    assert first["offers"] == second["offers"] == ["spanish", "excel"]
    assert "department" not in first and result.ignored_columns == ("hobbies",)


def test_bad_json_lines_are_named_by_line_and_key() -> None:
    good = {
        "person_id": "n-1",
        "display_name": "Noël",
        "email": "noel@acme.example",
        "languages": ["fr"],
        "timezone": "America/Toronto",
        "goals": [{"topic": "python", "priority": 1}],
    }
    lines = [
        json.dumps(good).encode(),
        b"{not json",
        b"[1, 2]",
        json.dumps(
            {**good, "person_id": "n-4", "goals": [{"topic": "python", "priority": 7}]}
        ).encode(),
        json.dumps({**good, "person_id": "n-5", "languages": 5}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "email"} | {"person_id": "n-6"}).encode(),
        b'{"person_id": "n-7", "display_name": "\xff"}',
    ]
    raw = b"\n".join(lines)
    result = checked(raw, "jsonl", role="mentee")
    assert problems(result) == [
        "line 2: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1)",
        "line 3: a line must hold one JSON object, not an array",
        'line 4, column goals: \'{"topic": "python", "priority": 7}\': priority must be between '
        "1 and 3",
        "line 5, column languages: '5': must be a list (or text: items separated by ';')",
        "line 6, column email: required",
        "line 7: not valid UTF-8 (byte 0xff at position 39); save the file as UTF-8",
    ]
    assert [r.line for r in result.records] == [1]


# --- ids: the same content, the same id ---------------------------------------------------------


def ids(result: Checked) -> list[str]:
    return [r.event_id for r in result.records]


def test_ids_are_stable_across_runs_and_change_only_with_the_content() -> None:
    rows = [mentor(f"p-{i}") for i in range(3)]
    first = checked(csv_file(*rows))
    later = checked(csv_file(*rows), now=NOW + timedelta(days=1))
    assert ids(first) == ids(later) and len(set(ids(first))) == 3
    assert all(uuid.UUID(i).version == 5 for i in ids(first))
    assert json.loads(first.records[0].value)["time"] != json.loads(later.records[0].value)["time"]

    changed = checked(csv_file(rows[0], mentor("p-1", capacity="3"), rows[2]))
    assert ids(changed)[0] == ids(first)[0] and ids(changed)[2] == ids(first)[2]
    assert ids(changed)[1] != ids(first)[1]
    # Another tenant, program or revision: other ids, same content.
    assert set(ids(checked(csv_file(*rows), tenant="globex"))).isdisjoint(ids(first))
    assert set(ids(checked(csv_file(*rows), revision="undo-1"))).isdisjoint(ids(first))
    other = check(csv_file(*rows), "csv", role="mentor", tenant="acme", program="p2", now=NOW)
    assert set(ids(other)).isdisjoint(ids(first))


def test_ids_follow_the_content_not_its_spelling() -> None:
    """The same data written differently (case of a language, spaces, CSV or JSON lines) is the
    same registration: re-importing it after a cosmetic edit or a format change does nothing."""
    plain = checked(csv_file(mentor("p-1")))
    cosmetic = checked(
        csv_file(mentor("p-1", languages=" EN; fr ", expertise="python :5;public speaking: 4"))
    )
    data = data_of(plain)[0]
    as_json = {k: v for k, v in data.items() if k != "program_id"}
    jsonl = checked(json.dumps(as_json).encode(), "jsonl")
    assert ids(plain) == ids(cosmetic) == ids(jsonl)


def test_a_signing_key_signs_every_event_as_the_services_check_it() -> None:
    key = b"acme-secret"
    (record,) = checked(csv_file(mentor()), signing_key=key).records
    assert json.loads(record.value)["signature"].startswith("sha256=")

    def decode(r: Record, signing_key: bytes) -> None:
        keys = {"acme": signing_key}
        decode_record(r.value, r.headers, topic=r.topic, key=r.key, signing_keys=keys, now=NOW)

    decode(record, key)
    with pytest.raises(Rejected, match="bad_signature"):
        decode(record, b"other")
    (unsigned,) = checked(csv_file(mentor())).records
    with pytest.raises(Rejected, match="bad_signature"):
        decode(unsigned, key)
    assert unsigned.event_id == record.event_id  # the signature is no part of the id


# --- the docs' samples -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["mentor", "mentee"])
def test_the_sample_files_of_the_docs_are_valid(role: Role) -> None:
    path = SAMPLES / f"{role}s.csv"
    result = checked(path.read_bytes(), detect_format(path), role=role)
    assert result.problems == () and result.ignored_columns == ()
    assert len(result.records) == result.rows >= 5
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == list(columns(role))  # every column of the contract, in its order
    names = [d["display_name"] for d in data_of(result)]
    assert any(not name.isascii() for name in names)  # accents survive the trip
    # some people say what they would learn (mentors) or share (mentees), some do not
    optional = "learning_interests" if role == "mentor" else "offers"
    said = [d.get(optional) for d in data_of(result)]
    assert ["data visualisation", "spanish"] in said and None in said


# --- the command, without a broker (--dry-run, or refused before publishing) -------------------------


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["import", *args])


def test_the_command_lists_every_bad_row_and_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mentors.csv"
    path.write_bytes(csv_file(mentor("p-1"), mentor("p-2", expertise="python:9"), mentor("p-3")))
    args = [str(path), "--tenant", "acme", "--program", "leaders-2026", "--role", "mentor"]
    # No broker at this address: reaching Kafka would fail, so exit 1 here is the refusal.
    refused = run_cli(*args, "-b", "127.0.0.1:1")
    assert refused.exit_code == 1
    assert "line 3, column expertise: 'python:9': level must be between 1 and 5" in refused.output
    assert "1 of 3 rows are invalid; nothing was published" in refused.output
    dry = run_cli(*args, "--skip-invalid", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert (
        "would publish 2 mentor registrations for tenant acme, program leaders-2026 "
        "(1 row skipped)" in dry.output
    )
