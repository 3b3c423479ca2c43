"""Programs from the command line: a manager's configuration file checked against the contract,
what it changes against the configuration in force, its `program-configured` event published
and awaited until matching applies it; and where a program stands, read from matching's tables.

Pure functions first (parse, validate, diff), then the database reads and the publishing. The
configuration in force is matching's own: its defaults and its reading of a stored event
(`ProgramConfig`), so what the CLI shows is what matching scores with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import asyncpg
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from services.matching.domain.config import CRITERIA, ProgramConfig
from services.matching.repository import learned_of
from shared.contract.envelope import CloudEvent, Rejected, decode_record, record_key
from shared.contract.events import (
    ProgramConfigured,
    ProgramRules,
    TopicDefinition,
    WaitingReason,
    WeightBounds,
)
from shared.contract.topics import TOPICS, dead_letter_topic
from shared.ops.analytics import NOT_TRIED, waiting_because
from shared.runtime.kafka import client_options
from shared.runtime.settings import KafkaSettings

TOPIC = "program-configured"
SOURCE = "mentornet/cli"
WAIT_SECONDS = 30.0
POLL_SECONDS = 0.2
TOP_MENTORS = 5

Kind = Literal["yaml", "json"]
FieldPath = tuple[str | int, ...]  # a field's place in the file: ("rules", "department")


class ProgramError(Exception):
    """A user-facing failure (a bad file, an unknown program, a timeout): one line, exit 1."""


# --- reading a file -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice: PyYAML silently keeps the last one, and a
    setting written twice is a mistake the manager should see."""


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping says so with its position
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)

# Booleans as YAML 1.2 reads them, true and false only: YAML 1.1 also reads on, off, yes and no
# as booleans, and `learning: on` must stay the word the contract expects.
_BOOL = "tag:yaml.org,2002:bool"
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class Document:
    """A parsed configuration file; YAML keeps its node tree, to name a bad field's line."""

    name: str
    data: Any
    node: yaml.Node | None = None

    def line_of(self, path: FieldPath) -> int | None:
        """The 1-based line of the field at `path` (the deepest part found), YAML only."""
        node, line = self.node, None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                found = next(
                    ((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None
                )
                if found is None:
                    break
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


def kind_of(path: Path) -> Kind:
    """YAML or JSON, by the file's extension."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ProgramError(
        f"{path}: unknown extension {suffix or '(none)'!r}: use .yaml, .yml or .json"
    )


def load_file(path: Path) -> Document:
    kind = kind_of(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProgramError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProgramError(f"{path}: {exc.strerror or exc}") from None
    return parse(text, kind, str(path))


def parse(text: str, kind: Kind, name: str) -> Document:
    """The file's content; a syntax error names its line and column."""
    if kind == "json":
        try:
            return Document(name, json.loads(text, object_pairs_hook=_json_object))
        except json.JSONDecodeError as exc:
            raise ProgramError(
                f"{name} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}"
            ) from None
        except _TwiceGiven as exc:
            raise ProgramError(f"{name}: not valid JSON: {exc}") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        where = _at(exc.problem_mark)
        raise ProgramError(f"{name}{where}: not valid YAML: {_yaml_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise ProgramError(f"{name}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return Document(name, data, node)


def _at(mark: Any) -> str:
    return f" line {mark.line + 1} column {mark.column + 1}" if mark else ""


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """`expected ',' or ']', but got '<stream end>' (in the flow sequence at line 2 column 7)`."""
    problem = exc.problem or str(exc)
    if exc.context and exc.context_mark:
        problem += f" ({exc.context} at{_at(exc.context_mark)})"
    return problem


class _TwiceGiven(ValueError):
    """A JSON object names a key twice (json keeps the last one silently)."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _TwiceGiven(f"the key {twice!r} is given twice")
    return dict(pairs)


# --- checking it against the contract -------------------------------------------------------------


def validate(document: Document) -> ProgramConfigured:
    """The file as the contract's `ProgramConfigured`; every problem names its field (and line).

    Stricter than the contract on one point: a field the contract does not know is refused, not
    ignored, since in a file written by hand it is a typo (`stall_after_day`) that would
    otherwise silently leave the default in force."""
    data = document.data
    if not isinstance(data, dict):
        found = "nothing" if data is None else f"a {type(data).__name__}"
        raise ProgramError(
            f"{document.name}: expected the settings as a mapping (program_id, weights, rules, "
            f"...), found {found}"
        )
    problems = _unknown_fields(data, ProgramConfigured, ())
    if isinstance(data.get("rules"), dict):
        problems += _unknown_fields(data["rules"], ProgramRules, ("rules",))
    if isinstance(data.get("weight_bounds"), dict):
        for criterion, bounds in data["weight_bounds"].items():
            if isinstance(bounds, dict):
                problems += _unknown_fields(bounds, WeightBounds, ("weight_bounds", criterion))
    if isinstance(data.get("topics"), list):
        for i, topic in enumerate(data["topics"]):
            if isinstance(topic, dict):
                problems += _unknown_fields(topic, TopicDefinition, ("topics", i))
    configured: ProgramConfigured | None = None
    try:
        configured = ProgramConfigured.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(error) for error in exc.errors()]
    if problems or configured is None:
        problems.sort(key=lambda problem: document.line_of(problem[0]) or 0)
        raise ProgramError(
            f"{document.name}: " + "; ".join(_located(document, p, m) for p, m in problems)
        )
    return configured


def _unknown_fields(
    data: dict[Any, Any], model: type[Any], at: FieldPath
) -> list[tuple[FieldPath, str]]:
    known = list(model.model_fields)
    problems = []
    for name in data:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            problems.append(((*at, name), f"not a setting{hint}"))
    return problems


def _problem(error: Any) -> tuple[FieldPath, str]:
    path: FieldPath = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if path and path[-1] == "[key]":  # a dict's key is wrong, e.g. an unknown criterion
        path, message = path[:-1], f"not a criterion: {message}"
    if error["type"] == "missing":
        message = "is required"
    return path, message


def _located(document: Document, path: FieldPath, message: str) -> str:
    line = document.line_of(path)
    where = f"line {line}: " if line else ""
    return f"{where}'{'.'.join(str(p) for p in path)}': {message}"


# --- the event ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """The event to publish, checked: the exact bytes that passed `decode_record`."""

    event: CloudEvent
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    @property
    def configured(self) -> ProgramConfigured:
        data = self.event.data
        assert isinstance(data, ProgramConfigured)
        return data


def prepare(
    configured: ProgramConfigured,
    tenant: str,
    now: datetime | None = None,
    signing_key: bytes | None = None,
) -> Prepared:
    """The `program-configured` event, put through `decode_record` as matching will read it.

    Its id is random: matching keeps the configuration with the latest `time` and drops a
    repeated id as a duplicate, so an id derived from the content would make going back to an
    earlier file (A, then B, then A again) a silent duplicate, with B left in force."""
    try:
        event = CloudEvent.new(TOPIC, SOURCE, tenant, configured, time=now or datetime.now(UTC))
    except ValidationError as exc:
        raise ProgramError(f"--tenant {tenant!r}: {exc.errors()[0]['msg']}") from None
    key, headers = record_key(event).encode(), event.kafka_headers()
    value = event.signed_bytes(signing_key) if signing_key is not None else event.to_bytes()
    keys = {tenant: signing_key} if signing_key is not None else None
    try:
        checked = decode_record(value, headers, topic=TOPIC, key=key, signing_keys=keys)
    except Rejected as exc:
        raise ProgramError(f"the event breaks the contract ({exc.code}): {exc.reason}") from None
    return Prepared(checked, key, value, headers)


# --- what changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    setting: str
    in_force: Any
    new: Any


NOT_SETTINGS = ("taxonomy", "learned")  # the topics are listed as written (`topics`); learned
# weights are what the outcomes taught, not a setting


def settings_of(config: ProgramConfig, topics: Sequence[TopicDefinition] = ()) -> dict[str, Any]:
    """Every setting matching applies, flat (`weights.topic_fit`, `rules.department`,
    `weight_bounds.timezone`), then the program's `topics`, each as `topics.<topic>`: in a
    stable order; new fields of ProgramConfig appear without a change here."""
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in NOT_SETTINGS:
            continue
        if field.name == "weights":
            flat |= {f"weights.{c}": value.get(c, 0.0) for c in CRITERIA}
        elif field.name == "weight_bounds":  # every criterion's, as matching applies them
            flat |= {f"weight_bounds.{c}": _bounds(config, c) for c in CRITERIA}
        elif isinstance(value, ProgramRules):
            flat |= {f"rules.{k}": v for k, v in value.model_dump().items()}
        else:
            flat[field.name] = list(value) if isinstance(value, tuple) else value
    defined: dict[str, list[dict[str, Any]]] = {}
    for topic in topics:
        said = topic.model_dump(mode="json", exclude={"topic"}, exclude_defaults=True)
        defined.setdefault(f"topics.{topic.topic}", []).append(said)
    # a topic defined twice (the definitions add up): its definitions, in order
    return flat | {name: said[0] if len(said) == 1 else said for name, said in defined.items()}


def _bounds(config: ProgramConfig, criterion: str) -> dict[str, float]:
    low, high = config.bounds(criterion)
    return {"min": low, "max": high}


def diff(in_force: ProgramConfig, new: ProgramConfig) -> list[Change]:
    """The settings that differ, in `settings_of` order; empty when nothing changes.

    Compared as matching applies them: an unnamed weight is its default, check-ins left out are
    the defaults below the relationship's length. Raw weights are compared, not their scaled
    shares, so changing one weight lists that weight only."""
    return _changes(settings_of(in_force), settings_of(new))


def changes_against(in_force: InForce, configured: ProgramConfigured) -> list[Change]:
    """What publishing `configured` changes in the program's configuration in force, its topics
    included (one dropped is listed as new `none`)."""
    return _changes(
        settings_of(in_force.config, in_force.topics),
        settings_of(ProgramConfig.of(configured), configured.topics),
    )


def _changes(old: dict[str, Any], now: dict[str, Any]) -> list[Change]:
    changed = [Change(k, old.get(k), v) for k, v in now.items() if old.get(k) != v]
    return changed + [Change(k, v, None) for k, v in old.items() if k not in now]


def show_value(value: Any) -> str:
    """A setting as a person reads it: 72 not 72.0, lists joined, `none` for no limit."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(show_value(v) for v in value) if value else "none"
    if isinstance(value, dict):  # weight bounds, a topic's definition
        return "; ".join(f"{k}: {show_value(v)}" for k, v in value.items()) or "none"
    return str(value)


# --- matching's tables ----------------------------------------------------------------------------

IN_FORCE_SQL = """
SELECT config, updated_at
FROM matching.programs
WHERE tenant_id = $1 AND program_id = $2"""

MENTORS_SQL = """
SELECT count(*) AS enrolled,
       count(a.paused_until) AS paused,
       coalesce(sum(m.capacity), 0) AS places,
       coalesce(sum(m.load), 0) AS taken,
       coalesce(sum(greatest(m.capacity - m.load, 0)), 0) AS free,
       coalesce(sum(greatest(m.capacity - m.load, 0)) FILTER (WHERE a.paused_until IS NULL), 0)
           AS free_not_paused
FROM matching.mentors m
LEFT JOIN matching.availability a USING (tenant_id, program_id, person_id)
WHERE m.tenant_id = $1 AND m.program_id = $2"""

TOP_MENTORS_SQL = """
SELECT m.person_id, m.capacity, m.load AS taken, greatest(m.capacity - m.load, 0) AS free,
       a.paused_until IS NOT NULL AS paused
FROM matching.mentors m
LEFT JOIN matching.availability a USING (tenant_id, program_id, person_id)
WHERE m.tenant_id = $1 AND m.program_id = $2
ORDER BY free DESC, m.person_id
LIMIT $3"""

MENTEES_SQL = """
SELECT count(*) AS enrolled,
       count(*) FILTER (WHERE status = 'waiting') AS waiting,
       min(waiting_since) FILTER (WHERE status = 'waiting') AS oldest_waiting_since,
       count(*) FILTER (WHERE status = 'proposed') AS proposed,
       count(*) FILTER (WHERE status = 'matched') AS matched,
       count(*) FILTER (WHERE status = 'done') AS done
FROM matching.mentees
WHERE tenant_id = $1 AND program_id = $2"""

WAITING_SQL = """
SELECT waiting_reason AS reason, count(*) AS mentees
FROM matching.mentees
WHERE tenant_id = $1 AND program_id = $2 AND status = 'waiting'
GROUP BY waiting_reason"""

LEARNED_SQL = """
SELECT weights, learned, outcomes, in_force, learned_at
FROM matching.learned_weights
WHERE tenant_id = $1 AND program_id = $2"""

MATCHES_SQL = """
SELECT count(*) AS matches,
       count(*) FILTER (WHERE status = 'proposed') AS open_proposals,
       min(proposed_at) FILTER (WHERE status = 'proposed') AS oldest_proposed_at,
       min(expires_at) FILTER (WHERE status = 'proposed') AS next_expiry,
       count(*) FILTER (WHERE status = 'confirmed') AS active_relationships,
       count(*) FILTER (WHERE status IN ('completed', 'ended_early')) AS ended_relationships
FROM matching.matches
WHERE tenant_id = $1 AND program_id = $2"""


@asynccontextmanager
async def connect(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection that decodes jsonb, as matching's pool does."""
    conn = await asyncpg.connect(
        database_url, timeout=10, server_settings={"application_name": "mentornet-cli"}
    )
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        yield conn
    except asyncpg.UndefinedTableError:
        raise ProgramError(
            "matching's tables are missing from this database: run `mentornet migrate`"
        ) from None
    finally:
        await conn.close()


@dataclass(frozen=True)
class InForce:
    """The configuration matching applies to a program; `updated_at` None: its defaults. Its
    topics as written: the configuration holds them merged into the shipped taxonomy."""

    config: ProgramConfig
    updated_at: datetime | None
    topics: tuple[TopicDefinition, ...] = ()

    @property
    def configured(self) -> bool:
        return self.updated_at is not None


async def read_in_force(conn: asyncpg.Connection, tenant: str, program_id: str) -> InForce:
    row = await conn.fetchrow(IN_FORCE_SQL, tenant, program_id)
    if row is None:
        return InForce(ProgramConfig(), None)
    configured = ProgramConfigured.model_validate(row["config"])
    return InForce(ProgramConfig.of(configured), row["updated_at"], tuple(configured.topics))


# --- words for a program manager ------------------------------------------------------------------


def waiting_words(reasons: Mapping[str, int]) -> str:
    """`12 waiting: 7 no mentor covers a goal, 5 no free place` (by `waiting_reasons`)."""
    total = sum(reasons.values())
    said = waiting_because(reasons)
    return f"{total} waiting: {said}" if total else "0 waiting"


def weights_words(config: ProgramConfig) -> str:
    """Which weights score proposals, and how many outcomes are behind them."""
    learned, needed = config.learned, config.learning_min_outcomes
    if config.learns and learned is not None:
        return (
            f"weights in force: learned from {learned.outcomes} outcomes, within the bounds "
            f"(learning on; {needed} needed)"
        )
    if config.learning != "on":
        ignored = (
            f"; what {learned.outcomes} outcomes taught is ignored" if learned is not None else ""
        )
        return f"weights in force: as configured (learning off{ignored})"
    so_far = "none learned from yet" if learned is None else f"{learned.outcomes} so far"
    return f"weights in force: as configured (learning on: {needed} outcomes needed, {so_far})"


@dataclass(frozen=True)
class Overview:
    """Where a program stands, from one snapshot of matching's tables."""

    tenant: str
    program_id: str
    in_force: InForce
    mentors: dict[str, int]
    top_mentors: list[dict[str, Any]]
    mentees: dict[str, Any]
    matches: dict[str, Any]
    waiting_reasons: dict[str, int]  # by `mentees.waiting_reason` (NOT_TRIED: none yet)
    learned_at: datetime | None = None  # when its weights were last learned (see config.learned)

    @property
    def config(self) -> ProgramConfig:
        """The configuration with its learned weights: what matching scores with."""
        return self.in_force.config

    @property
    def known(self) -> bool:
        """Whether matching has ever heard of the program: configured, people or matches."""
        return (
            self.in_force.configured
            or self.mentors["enrolled"] > 0
            or self.mentees["enrolled"] > 0
            or self.matches["matches"] > 0
        )

    def as_json(self) -> dict[str, Any]:
        """For scripts: plain JSON types, times in RFC 3339."""
        config, learned = self.config, self.config.learned
        return _jsonable(
            {
                "tenant": self.tenant,
                "program_id": self.program_id,
                "configuration": {
                    "configured": self.in_force.configured,
                    "updated_at": self.in_force.updated_at,
                    "settings": settings_of(config, self.in_force.topics),
                    "weights_in_force": config.weights_in_force(),
                    "weight_shares": config.normalised_weights(),
                },
                "learning": {
                    "learning": config.learning,
                    "learned_weights_in_force": config.learns,
                    "min_outcomes": config.learning_min_outcomes,
                    "outcomes": None if learned is None else learned.outcomes,
                    "learned_at": self.learned_at,
                    "weights": None if learned is None else learned.weights,
                    "learned": None if learned is None else learned.learned,
                },
                "mentors": {**self.mentors, "top": self.top_mentors},
                "mentees": {**self.mentees, "waiting_reasons": self.waiting_reasons},
                "proposals": {
                    "open": self.matches["open_proposals"],
                    "oldest_proposed_at": self.matches["oldest_proposed_at"],
                    "next_expiry": self.matches["next_expiry"],
                },
                "relationships": {
                    "active": self.matches["active_relationships"],
                    "ended": self.matches["ended_relationships"],
                },
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


async def read_overview(
    conn: asyncpg.Connection, tenant: str, program_id: str, top: int = TOP_MENTORS
) -> Overview:
    """Every figure from one snapshot (a repeatable-read, read-only transaction), so the counts
    agree with each other while matching keeps working."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        in_force = await read_in_force(conn, tenant, program_id)
        mentors = await conn.fetchrow(MENTORS_SQL, tenant, program_id)
        top_mentors = await conn.fetch(TOP_MENTORS_SQL, tenant, program_id, top)
        mentees = await conn.fetchrow(MENTEES_SQL, tenant, program_id)
        waiting = await conn.fetch(WAITING_SQL, tenant, program_id)
        matches = await conn.fetchrow(MATCHES_SQL, tenant, program_id)
        learned = await conn.fetchrow(LEARNED_SQL, tenant, program_id)
    reasons = dict.fromkeys([*get_args(WaitingReason), NOT_TRIED], 0)
    reasons |= {r["reason"] or NOT_TRIED: r["mentees"] for r in waiting}
    if learned is not None:
        taught = in_force.config.with_learned(learned_of(learned))
        in_force = dataclasses.replace(in_force, config=taught)
    return Overview(
        tenant,
        program_id,
        in_force,
        dict(mentors),
        [dict(r) for r in top_mentors],
        dict(mentees),
        dict(matches),
        reasons,
        None if learned is None else learned["learned_at"],
    )


# --- publishing and waiting -----------------------------------------------------------------------


async def publish(kafka: KafkaSettings, prepared: Prepared) -> tuple[int, int]:
    """Send the checked bytes once (idempotent producer, acks=all); returns partition, offset."""
    producer = AIOKafkaProducer(
        **client_options(kafka), client_id="mentornet-cli", acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            TOPIC, prepared.value, key=prepared.key, headers=list(prepared.headers)
        )
    finally:
        await producer.stop()
    return meta.partition, meta.offset


class DeadLetters:
    """The dead-letter topics of the event's readers (matching), read from before publishing, so
    a rejection ends the wait at once with its reason (e.g. a tenant whose events must be signed)
    instead of a timeout."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.partitions: list[TopicPartition] = []
        self.topics = [dead_letter_topic(service) for service in TOPICS[TOPIC].consumers]
        self.consumer = AIOKafkaConsumer(
            **client_options(kafka),
            client_id="mentornet-cli",
            group_id=None,  # no group: nothing committed, no service disturbed
            enable_auto_commit=False,
        )

    async def __aenter__(self) -> DeadLetters:
        # The admin client's metadata: a fresh consumer's may still lack the topics.
        admin = AIOKafkaAdminClient(**client_options(self.kafka), client_id="mentornet-cli")
        await admin.start()
        try:
            described = await admin.describe_topics(self.topics)
        finally:
            await admin.close()
        self.partitions = [
            TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
        ]
        partitions = self.partitions
        await self.consumer.start()
        try:
            self.consumer.assign(partitions)
            await self.consumer.seek_to_end(*partitions)
            for tp in partitions:  # resolve the end now: a dead letter after it is ours to see
                await self.consumer.position(tp)
        except BaseException:
            await self.consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def rejection(self, value: bytes, seconds: float) -> str | None:
        """Why matching rejected the record `value`, if it did within `seconds`."""
        if not self.partitions:  # no dead-letter topic to read: the timeout will say it
            await asyncio.sleep(seconds)
            return None
        batches = await self.consumer.getmany(timeout_ms=int(seconds * 1000))
        for records in batches.values():
            for record in records:
                if record.value == value:
                    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers}
                    return f"{headers.get('dlq-reason-code', '?')}: {headers.get('dlq-reason', '')}"
        return None


async def wait_in_force(
    conn: asyncpg.Connection,
    prepared: Prepared,
    timeout: float = WAIT_SECONDS,
    dead_letters: DeadLetters | None = None,
    every: float = POLL_SECONDS,
) -> float:
    """Poll matching's table until it holds this event (the row's `updated_at` is the event's
    `time`, matching keeps the latest); returns the seconds waited.

    A row dated later means another configuration won: said, not taken for ours. A dead letter
    of the event means matching refused it: said at once."""
    started = time.monotonic()
    tenant, program_id = prepared.event.tenantid, prepared.configured.program_id
    expected = ProgramConfig.of(prepared.configured)
    while True:
        row = await read_in_force(conn, tenant, program_id)
        if row.updated_at is not None and row.updated_at >= prepared.event.time:
            if row.updated_at == prepared.event.time and row.config == expected:
                return time.monotonic() - started
            raise ProgramError(
                f"another configuration of {program_id!r}, dated {row.updated_at.isoformat()}, "
                "is in force instead of this one (matching keeps the latest `time`)"
            )
        waited = time.monotonic() - started
        if waited > timeout:
            raise ProgramError(
                f"published (event {prepared.event.id}), but not in force after {timeout:g} s: "
                "is matching running?"
            )
        if dead_letters is None:
            await asyncio.sleep(every)
        elif (reason := await dead_letters.rejection(prepared.value, every)) is not None:
            raise ProgramError(f"matching rejected event {prepared.event.id}: {reason}")
