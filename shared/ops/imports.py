"""Registrations from a spreadsheet export (CSV) or JSON lines: parse, check, build the records.

Pure (bytes in, Kafka records and problems out) so it can be tested without a broker; the
`mentornet import` command (shared.ops.cli.importer) publishes what this returns.

Every row is checked exactly as profiles will check it: the payload model first (its errors are
turned into "line, column: reason" a person can act on), then `decode_record` on the very bytes,
headers and key that would be published. Event ids derive from the content, so importing the same
file again changes nothing: profiles drops an id it has already handled as a duplicate.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from shared.contract.envelope import CloudEvent, Rejected, decode_record, record_key
from shared.contract.events import Identifier, MenteeRegistered, MentorRegistered, PersonFields

Role = Literal["mentor", "mentee"]
Format = Literal["csv", "jsonl"]

SOURCE = "mentornet/import"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "mentornet/import")  # of the content-derived event ids
MODELS: dict[Role, type[PersonFields]] = {"mentor": MentorRegistered, "mentee": MenteeRegistered}
TOPICS: dict[Role, str] = {"mentor": "mentor-registered", "mentee": "mentee-registered"}
FORMATS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

SEPARATOR = ";"  # between the items of a list cell: "en;fr", "python:4;public speaking:3"
# plain lists: languages, and the topics a mentor would like to learn or a mentee can share
LIST_COLUMNS = frozenset({"languages", "learning_interests", "offers"})
# columns of `topic:number` pairs: the number's field, and an example for messages
PAIR_COLUMNS = {"expertise": ("level", "python:4"), "goals": ("priority", "leadership:1")}

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_DATA_FIELD = re.compile(r"'data\.([A-Za-z_]+)")


class ImportRefused(Exception):
    """The file as a whole cannot be imported (no row is even looked at): one line for the user."""


@dataclass(frozen=True)
class Problem:
    """Why one row cannot be published; `column` is empty when the whole line is wrong."""

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.column else f"line {self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Record:
    """One Kafka record ready to publish, and the file line it came from."""

    line: int
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_id: str


@dataclass(frozen=True)
class Checked:
    """The outcome of checking a file: the records of its valid rows, the problems of the others."""

    records: tuple[Record, ...]
    problems: tuple[Problem, ...]
    rows: int
    ignored_columns: tuple[str, ...] = ()

    @property
    def invalid_rows(self) -> int:
        return self.rows - len(self.records)

    @property
    def invalid_lines(self) -> tuple[int, ...]:
        return tuple(sorted({p.line for p in self.problems}))


@dataclass
class _Row:
    """A row as read from the file: its first line, its cells by column, any structural problem."""

    line: int
    cells: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)


def columns(role: Role) -> tuple[str, ...]:
    """The columns a file of `role` may have, in the contract's order (program_id is an option)."""
    return tuple(name for name in MODELS[role].model_fields if name != "program_id")


def required_columns(role: Role) -> tuple[str, ...]:
    fields = MODELS[role].model_fields
    return tuple(name for name in columns(role) if fields[name].is_required())


def detect_format(path: Path, given: Format | None = None) -> Format:
    """The format named by --format, or else by the file's extension."""
    if given is not None:
        return given
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(FORMATS)
        raise ImportRefused(
            f"cannot tell the format of {path.name!r} from its extension ({known}): give --format"
        )
    return found


def check(
    raw: bytes,
    file_format: Format,
    *,
    role: Role,
    tenant: str,
    program: str,
    now: datetime,
    revision: str = "",
    signing_key: bytes | None = None,
) -> Checked:
    """Check every row of a file and build the records of the valid ones (signed with
    `signing_key`, for a tenant whose events mentornet only accepts signed).

    Raises ImportRefused for what makes the whole file unusable (a bad --tenant or --program, an
    empty file, an unreadable CSV header, a required column missing from it)."""
    _check_identifier("--tenant", tenant)
    _check_identifier("--program", program)
    known = columns(role)
    if file_format == "csv":
        header, rows = _read_csv(raw)
        missing = [c for c in required_columns(role) if c not in header]
        if missing:
            raise ImportRefused(
                f"line 1: the header lacks the required column(s) {', '.join(missing)} "
                f"(columns of {role}s: {', '.join(known)})"
            )
        twice = sorted({c for c in header if c and header.count(c) > 1})
        if twice:
            raise ImportRefused(f"line 1: the header names {', '.join(twice)} more than once")
        ignored = [c for c in header if c not in known]
    else:
        rows, ignored = _read_jsonl(raw, known)

    model, topic = MODELS[role], TOPICS[role]
    order = {column: i for i, column in enumerate(known)}  # a row's problems in column order
    problems: list[Problem] = []
    records: dict[int, Record] = {}
    lines_of: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row.problems:  # not even cells to look at: bad bytes, broken CSV or JSON
            problems += row.problems
            continue
        person = row.cells.get("person_id")
        if isinstance(person, str) and person.strip():
            lines_of[person.strip()].append(row.line)
        payload, found = _payload(model, row, program)
        if payload is None:
            problems += found
            continue
        record = _record(
            payload, row.line, topic, tenant, program, role, now, revision, signing_key
        )
        if isinstance(record, Problem):
            problems.append(record)
        else:
            records[row.line] = record
    for person, lines in lines_of.items():
        if len(lines) < 2:
            continue
        for line in lines:  # which of them is right is the HR team's call: none is published
            others = [str(x) for x in lines if x != line]
            where = f"line{'s' * (len(others) > 1)} {', '.join(others)}"
            problems.append(Problem(line, "person_id", f"'{person}' is also on {where}"))
            records.pop(line, None)
    return Checked(
        records=tuple(records[line] for line in sorted(records)),
        problems=tuple(sorted(problems, key=lambda p: (p.line, order.get(p.column, -1)))),
        rows=len(rows),
        ignored_columns=tuple(dict.fromkeys(ignored)),
    )


def event_id(tenant: str, program: str, role: Role, data: Mapping[str, Any], revision: str) -> str:
    """The same row imported again gets the same id (a duplicate for profiles); any change to
    its content, or another --revision, gives a new one."""
    name = json.dumps(
        [tenant, program, role, revision, data],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return str(uuid.uuid5(NAMESPACE, name))


# --- reading -------------------------------------------------------------------------------------


def _check_identifier(option: str, value: str) -> None:
    try:
        _IDENTIFIER.validate_python(value)
    except ValidationError:
        raise ImportRefused(
            f"{option} {value!r}: letters, digits and ._:@/- only, starting with a letter or "
            "digit, at most 128"
        ) from None


def _physical_lines(raw: bytes) -> Iterator[tuple[int, str, str | None]]:
    """Each line of the file (numbered from 1, line end kept), decoded; and why not, when it is
    not UTF-8. Splitting the bytes first keeps one bad byte from hiding the rest of the file."""
    raw = raw.removeprefix(codecs.BOM_UTF8)  # spreadsheets often write one
    for number, chunk in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            yield number, chunk.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            why = (
                f"not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at position {exc.start + 1}); "
                "save the file as UTF-8"
            )
            yield number, chunk.decode("utf-8", "replace"), why


def _blank(cells: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _read_csv(raw: bytes) -> tuple[list[str], list[_Row]]:
    """The header (column names, trimmed and lower-cased) and the data rows, each with the line it
    starts on; blank rows are left out. A broken line is a problem of its row, not of the file."""
    lines = list(_physical_lines(raw))
    undecodable = {number: why for number, _, why in lines if why}
    reader = csv.reader((text for _, text, _ in lines), strict=True)
    header: list[str] | None = None
    rows: list[_Row] = []
    consumed = 0
    while True:
        first = consumed + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            consumed = reader.line_num
            if header is None:
                raise ImportRefused(f"line {first}: the header is not valid CSV: {exc}") from None
            rows.append(_Row(first, {}, [Problem(first, "", _csv_problem(exc, consumed))]))
            continue
        consumed = reader.line_num
        bad = [
            Problem(n, "", undecodable[n]) for n in range(first, consumed + 1) if n in undecodable
        ]
        if header is None:
            if bad:
                raise ImportRefused(f"the header (line {first}) is {bad[0].reason}")
            if not _blank(cells):
                header = [cell.strip().lower() for cell in cells]
            continue
        if _blank(cells) and not bad:
            continue
        if len(cells) > len(header) and _blank(cells[len(header) :]):
            cells = cells[: len(header)]  # trailing empty cells, as spreadsheets write them
        if len(cells) != len(header) and not bad:
            hint = " (a cell that holds a comma must be in double quotes)" * (
                len(cells) > len(header)
            )
            reason = f"{len(cells)} cells but the header has {len(header)} columns{hint}"
            bad.append(Problem(first, "", reason))
        rows.append(_Row(first, dict(zip(header, cells, strict=False)), bad))
    if header is None:
        raise ImportRefused("the file is empty: a CSV file starts with a header line")
    return header, rows


def _csv_problem(error: csv.Error, last_line: int) -> str:
    if "unexpected end of data" in str(error):
        return (
            f"a double quote opened on this line is never closed (read up to line {last_line}, "
            "the end of the file)"
        )
    return f"not valid CSV: {error}"


def _read_jsonl(raw: bytes, known: Sequence[str]) -> tuple[list[_Row], list[str]]:
    """One JSON object per line (blank lines skipped), and the keys outside the contract."""
    rows: list[_Row] = []
    ignored: dict[str, None] = {}
    for number, text, why in _physical_lines(raw):
        if why is not None:
            rows.append(_Row(number, {}, [Problem(number, "", why)]))
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            rows.append(_Row(number, {}, [Problem(number, "", f"not JSON: {exc}")]))
            continue
        if not isinstance(value, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean"}.get(
                type(value), "a number"
            )
            reason = f"a line must hold one JSON object, not {'null' if value is None else kind}"
            rows.append(_Row(number, {}, [Problem(number, "", reason)]))
            continue
        ignored.update((k, None) for k in value if k not in known)
        rows.append(_Row(number, value))
    return rows, list(ignored)


# --- checking one row ----------------------------------------------------------------------------


@dataclass
class _Cell:
    """A cell turned into the payload's value; `items` are its list items as written, to quote."""

    value: Any
    items: list[Any] | None = None
    problems: list[str] = field(default_factory=list)


_ABSENT = object()


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(SEPARATOR) if item.strip()]


def _convert(column: str, raw: Any) -> _Cell:
    """A cell (CSV text, or a JSON value) as the contract's JSON: lists and pairs from their
    `;`-separated text; a blank cell or a null is an absent field."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return _Cell(_ABSENT)
    if isinstance(raw, str):
        if column in LIST_COLUMNS or column in PAIR_COLUMNS:
            raw = _split(raw)
            if not raw:  # only separators: as empty as an empty cell
                return _Cell(_ABSENT)
        else:
            return _Cell(raw.strip())
    if column in PAIR_COLUMNS and isinstance(raw, list):
        return _pairs(column, raw)
    return _Cell(raw, items=list(raw) if isinstance(raw, list) else None)


def _pairs(column: str, raw: list[Any]) -> _Cell:
    """`topic:number` items as objects (the last colon splits, so a topic may hold one); items
    that are objects already (JSON lines) are left to the model."""
    number, example = PAIR_COLUMNS[column]
    values: list[Any] = []
    items: list[Any] = []
    problems: list[str] = []
    for item in raw:
        if isinstance(item, str):
            topic, colon, value = item.rpartition(":")
            if not colon:
                problems.append(f"'{item}': write topic:{number}, e.g. '{example}'")
                continue
            values.append({"topic": topic.strip(), number: value.strip()})
        else:
            values.append(item)
        items.append(item)
    return _Cell(values, items, problems)


def _payload(
    model: type[PersonFields], row: _Row, program: str
) -> tuple[PersonFields | None, list[Problem]]:
    """The row's validated payload, or the problems of its cells (column by column)."""
    data: dict[str, Any] = {}
    cells: dict[str, _Cell] = {}
    problems: list[Problem] = []
    for column in model.model_fields:
        if column == "program_id" or column not in row.cells:
            continue
        cell = cells[column] = _convert(column, row.cells[column])
        problems += [Problem(row.line, column, reason) for reason in cell.problems]
        if cell.value is not _ABSENT:
            data[column] = cell.value
    data["program_id"] = program
    try:
        payload = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            column = str(error["loc"][0]) if error["loc"] else ""
            in_item = len(error["loc"]) > 1 and isinstance(error["loc"][1], int)
            if column in cells and cells[column].problems and not in_item:
                continue  # the list is short of the items already said to be unreadable
            problems.append(Problem(row.line, column, _explain(model, error, cells.get(column))))
        payload = None
    if problems:
        return None, problems
    return payload, []


def _explain(model: type[BaseModel], error: ErrorDetails, cell: _Cell | None) -> str:
    """A pydantic error in the words of a person who edits the file: the value as written (the
    list item, for lists), then what is wrong with it."""
    loc = error["loc"]
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    part = f"{loc[2]} " if index is not None and len(loc) > 2 else ""
    items = cell.items if cell is not None else None
    if index is not None and items is not None and index < len(items):
        shown: Any = items[index]
    elif cell is not None and cell.value is not _ABSENT and cell.items is None:
        shown = error["input"]
    else:
        shown = _ABSENT
    if error["type"] == "missing":
        if shown is _ABSENT or index is None:
            return "required" if cell is None else "required, but the cell is empty"
        return f"'{_show(shown)}': {part}is required"
    message = _message(model, error, part)
    if shown is _ABSENT:
        return message
    quoted = f"'{_show(shown)}'"
    return message if quoted in message else f"{quoted}: {message}"


def _message(model: type[BaseModel], error: ErrorDetails, part: str) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(model, error["loc"])
        if low is not None and high is not None:
            return f"{part}must be between {low} and {high}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{part}must be a whole number"
    if kind == "string_pattern_mismatch":
        if error["loc"][-1] == "email":
            return "not an email address"
        return (
            f"{part}may hold only letters, digits and ._:@/- and must start with a letter or digit"
        )
    if kind == "list_type":
        return f"must be a list (or text: items separated by '{SEPARATOR}')"
    if kind == "string_too_short":
        return f"{part}is empty"
    if kind == "string_too_long":
        return f"{part}is longer than {ctx.get('max_length')} characters"
    if kind == "too_long":
        return f"{ctx.get('actual_length')} items; at most {ctx.get('max_length')}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    return f"{part}{error['msg'].removeprefix('Value error, ')}"


def _bounds(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[Any, Any]:
    """The contract's `ge` and `le` of the field at `loc` (nested models and lists followed)."""
    current: type[BaseModel] | None = model
    metadata: list[Any] = []
    for step in loc:
        if isinstance(step, int):
            continue
        info = current.model_fields.get(step) if current is not None else None
        if info is None:
            return None, None
        metadata = info.metadata
        current = next(
            (
                t
                for t in (info.annotation, *get_args(info.annotation))
                if isinstance(t, type) and issubclass(t, BaseModel)
            ),
            None,
        )
    low = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in metadata if hasattr(m, "le")), None)
    return low, high


def _show(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _record(
    payload: PersonFields,
    line: int,
    topic: str,
    tenant: str,
    program: str,
    role: Role,
    now: datetime,
    revision: str,
    signing_key: bytes | None,
) -> Record | Problem:
    """The row's record, passed through `decode_record` as profiles will read it."""
    data = payload.model_dump(mode="json", exclude_none=True)
    event = CloudEvent.new(
        topic,
        SOURCE,
        tenant,
        payload,
        id=event_id(tenant, program, role, data, revision),
        time=now,
    )
    value = event.signed_bytes(signing_key) if signing_key is not None else event.to_bytes()
    headers = event.kafka_headers()
    key = record_key(event).encode()
    keys = {tenant: signing_key} if signing_key is not None else None
    try:
        decode_record(value, headers, topic=topic, key=key, signing_keys=keys, now=now)
    except Rejected as rejected:
        column = _DATA_FIELD.search(rejected.reason)
        return Problem(line, column.group(1) if column else "", rejected.reason)
    return Record(line, topic, key, value, headers, event.id)
