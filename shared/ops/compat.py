"""Contract v1 only grows: compare the events' JSON Schemas with the committed snapshot.

A change is a *narrowing* when a message valid under the old schema might fail under the new one
(a field removed or newly required, a type or value dropped, a limit tightened, a pattern or
format added...). Anything else is growth. `docs/schemas/v1` holds the snapshot;
`mentornet schemas check` and tests/unit/test_contract_growth.py compare the contract with it.
A `$defs` model is compared where a `$ref` uses it, so a problem names the field a publisher fills
(`data.expertise[].level`), not the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.contract.events import EVENT_MODELS
from shared.contract.schemas import event_schema

SNAPSHOT_DIR = Path("docs/schemas/v1")
SUFFIX = ".schema.json"

Schema = Mapping[str, Any]

# Keywords whose only effect is to document: a change is reported as a change, never a narrowing.
ANNOTATIONS = (
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "x-kafka-key",
    "$id",
    "$schema",
)
# Keywords this checker does not reason about: any change to them is a possible narrowing.
OPAQUE = (
    "not",
    "if",
    "then",
    "else",
    "contains",
    "minContains",
    "maxContains",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "prefixItems",
)
Branch = tuple[dict[str, Any], str]  # a resolved schema and the $ref it came from ("" if none)
Seen = frozenset[tuple[str, str]]  # pairs of models being compared, to stop on recursion


@dataclass
class _Diff:
    """What a comparison found: narrowings (problems) and everything else that changed."""

    problems: list[str] = field(default_factory=list)
    growth: list[str] = field(default_factory=list)

    def extend(self, other: _Diff) -> None:
        self.problems += other.problems
        self.growth += other.growth


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _where(path: str) -> str:
    return path or "(envelope)"


class _Walker:
    """Compares two schemas of one event, each resolving `$ref`s against its own root."""

    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.roots = (old_root, new_root)

    # --- resolving ---------------------------------------------------------------------------

    def resolve(self, node: Any, side: int) -> tuple[dict[str, Any], str]:
        """The node with its `$ref` (and `allOf`, older pydantic's form) inlined, and the ref.

        The ref ("" if none) lets the walk stop at a pair of models it is already comparing, so
        recursive models terminate."""
        if node is True or node is None:
            return {}, ""
        if node is False:
            return {"not": {}}, ""
        node = dict(node)
        followed: list[str] = []
        while "$ref" in node and node["$ref"] not in followed:
            followed.append(node.pop("$ref"))
            node = {**self.pointer(followed[-1], side), **node}
        node.pop("$ref", None)
        for sub in node.pop("allOf", []):
            part, _ = self.resolve(sub, side)
            merged_props = {**part.get("properties", {}), **node.get("properties", {})}
            merged_required = [*part.get("required", []), *node.get("required", [])]
            node = {**part, **node}
            if merged_props:
                node["properties"] = merged_props
            if merged_required:
                node["required"] = merged_required
        return node, followed[-1] if followed else ""

    def pointer(self, ref: str, side: int) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        target: Any = self.roots[side]
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ValueError(f"$ref {ref!r} points at nothing")
            target = target[part]
        return dict(target)

    # --- comparing ---------------------------------------------------------------------------

    def compare(self, old: Any, new: Any, path: str, seen: Seen = frozenset()) -> _Diff:
        """Every narrowing from `old` to `new` at `path`, and what grew."""
        old_node, old_ref = self.resolve(old, 0)
        new_node, new_ref = self.resolve(new, 1)
        old_branches = self.branches(old_node, old_ref, 0)
        new_branches = self.branches(new_node, new_ref, 1)
        if len(old_branches) == 1 and len(new_branches) == 1:
            diff = self.compare_one(old_branches[0], new_branches[0], path, seen)
        else:
            diff = self.compare_union(old_branches, new_branches, path, seen)
        for key in ANNOTATIONS:
            before, after = old_node.get(key), new_node.get(key)
            if before == after:
                continue
            if key == "default":
                diff.growth.append(
                    f"{_where(path)}: default changed from {_show(before)} to {_show(after)} "
                    "(its meaning must not change)"
                )
            else:
                diff.growth.append(f"{_where(path)}: {key} changed")
        return diff

    def branches(self, node: dict[str, Any], ref: str, side: int) -> list[Branch]:
        """A union (`anyOf`/`oneOf`, how pydantic renders Optional) as its resolved branches."""
        union = node.get("anyOf", node.get("oneOf"))
        if union is None:
            return [(node, ref)]
        shared = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", *ANNOTATIONS)}
        out: list[Branch] = []
        for sub in union:
            branch, sub_ref = self.resolve(sub, side)
            out.extend(self.branches({**shared, **branch}, sub_ref, side))
        return out

    def compare_union(self, old: list[Branch], new: list[Branch], path: str, seen: Seen) -> _Diff:
        """Each old branch must still be accepted by some new branch (the closest one)."""
        diff = _Diff()
        used: set[int] = set()
        for branch in old:
            trials = [self.compare_one(branch, other, path, seen) for other in new]
            if not trials:
                diff.problems.append(f"{_where(path)}: no value allowed any more")
                continue
            best = min(range(len(trials)), key=lambda i: (len(trials[i].problems), i))
            used.add(best)
            diff.extend(trials[best])
        for i, (schema, _) in enumerate(new):
            if i not in used:
                kinds = _types(schema)
                what = "/".join(sorted(kinds)) if "*" not in kinds else "any value"
                diff.growth.append(f"{_where(path)}: now also accepts {what}")
        return diff

    def compare_one(self, old_branch: Branch, new_branch: Branch, path: str, seen: Seen) -> _Diff:
        """Two schemas without unions: types, values, limits, then what they contain."""
        (old, old_ref), (new, new_ref) = old_branch, new_branch
        diff = _Diff()
        if old_ref or new_ref:
            if (old_ref, new_ref) in seen:
                return diff  # these two models are being compared higher up (recursion)
            seen = seen | {(old_ref, new_ref)}
        where = _where(path)
        old_types, new_types = _types(old), _types(new)
        kept = _check_types(old_types, new_types, where, diff)
        if not kept:
            diff.growth.clear()  # a branch dropped, not one that became another
            return diff  # nothing of the old survives: the rest would only repeat it

        def applies(*kinds: str) -> bool:
            return any(kind in kept for kind in kinds) or "*" in kept

        _check_values(old, new, where, diff)
        if applies("number", "integer"):
            _check_bound(old, new, where, diff, lower=True)
            _check_bound(old, new, where, diff, lower=False)
            before, after = old.get("multipleOf"), new.get("multipleOf")
            coarser = before is None or not float(before / after).is_integer()
            if after is not None and after != before and coarser:
                diff.problems.append(f"{where}: multipleOf {_show(after)} now required")
        if applies("string"):
            _check_size(old, new, where, diff, "minLength", "maxLength")
            for key in ("pattern", "format"):
                before, after = old.get(key), new.get(key)
                if after is not None and after != before:
                    change = (
                        f"{_show(after)} added"
                        if before is None
                        else f"changed from {_show(before)} to {_show(after)}"
                    )
                    diff.problems.append(f"{where}: {key} {change}")
                elif before is not None and after is None:
                    diff.growth.append(f"{where}: {key} {_show(before)} removed")
        if applies("array"):
            _check_size(old, new, where, diff, "minItems", "maxItems")
            if new.get("uniqueItems") and not old.get("uniqueItems"):
                diff.problems.append(f"{where}: items must now be unique")
            if "items" in old or "items" in new:
                diff.extend(self.compare(old.get("items"), new.get("items"), f"{path}[]", seen))
        if applies("object"):
            _check_size(old, new, where, diff, "minProperties", "maxProperties")
            diff.extend(self.compare_object(old, new, path, seen))
        for key in OPAQUE:
            if old.get(key) != new.get(key) and key in new:
                diff.problems.append(
                    f"{where}: {key} changed (this checker cannot tell it is not narrower)"
                )
        return diff

    def compare_object(
        self, old: dict[str, Any], new: dict[str, Any], path: str, seen: Seen
    ) -> _Diff:
        """Properties kept, none newly required, no more refused as additional."""
        diff = _Diff()
        prefix = f"{path}." if path else ""
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        added = [name for name in new_props if name not in old_props]
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name, schema in old_props.items():
            if name not in new_props:
                hint = f" (renamed? added here: {', '.join(added)})" if added else ""
                diff.problems.append(f"{prefix}{name}: property removed{hint}")
            else:
                diff.extend(self.compare(schema, new_props[name], f"{prefix}{name}", seen))
        for name in sorted(new_required - old_required):
            diff.problems.append(f"{prefix}{name}: newly required")
        for name in sorted(old_required - new_required):
            diff.growth.append(f"{prefix}{name}: no longer required")
        for name in added:
            kind = "required" if name in new_required else "optional"
            diff.growth.append(f"{prefix}{name}: {kind} property added")
        before, after = old.get("additionalProperties"), new.get("additionalProperties")
        if after is False and before is not False:
            diff.problems.append(f"{_where(path)}: additionalProperties turned false")
        elif before is False and after is not False:
            diff.growth.append(f"{_where(path)}: additional properties now allowed")
        elif before is not False and (before is not None or after is not None):
            diff.extend(self.compare(before, after, f"{prefix}*", seen))
        if "propertyNames" in old or "propertyNames" in new:
            diff.extend(
                self.compare(
                    old.get("propertyNames"), new.get("propertyNames"), f"{prefix}(key)", seen
                )
            )
        return diff


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _types(node: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema admits; {"*"} when it does not say."""
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return set(kind)
    if "const" in node:
        return {_json_type(node["const"])}
    if "enum" in node:
        return {_json_type(v) for v in node["enum"]}
    if node.get("not") == {}:
        return set()
    return {"*"}


def _check_types(old: set[str], new: set[str], where: str, diff: _Diff) -> set[str]:
    """The old types the new schema still admits; the others are narrowings."""
    if "*" in new:
        if "*" not in old:
            diff.growth.append(f"{where}: type no longer restricted")
        return old or set()
    if "*" in old:
        if new:
            diff.problems.append(f"{where}: type now restricted to {'/'.join(sorted(new))}")
            return new
        diff.problems.append(f"{where}: no value allowed any more")
        return set()
    kept: set[str] = set()
    for kind in sorted(old):
        if kind in new or (kind == "integer" and "number" in new):
            kept.add(kind)
        elif kind == "number" and "integer" in new:
            diff.problems.append(f"{where}: type narrowed from number to integer")
            kept.add("integer")
        else:
            diff.problems.append(f"{where}: {kind} no longer allowed")
    for kind in sorted(new - old):
        if kind == "number" and "integer" in old:
            diff.growth.append(f"{where}: type widened from integer to number")
        elif not (kind == "integer" and "number" in old):
            diff.growth.append(f"{where}: {kind} now allowed")
    return kept


def _values(node: Mapping[str, Any]) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    enum = node.get("enum")
    return list(enum) if enum is not None else None


def _check_values(old: dict[str, Any], new: dict[str, Any], where: str, diff: _Diff) -> None:
    """Listed values (enum, const, Literal) may only gain members."""
    before, after = _values(old), _values(new)
    if after is None:
        if before is not None:
            diff.growth.append(f"{where}: values no longer listed")
        return
    if before is None:
        diff.problems.append(f"{where}: now limited to the values {_show(after)}")
        return
    removed = [v for v in before if v not in after]
    grown = [v for v in after if v not in before]
    if removed and "const" in old and "const" in new:
        diff.problems.append(
            f"{where}: const changed from {_show(old['const'])} to {_show(new['const'])}"
        )
    elif removed:
        diff.problems.append(f"{where}: enum values removed: {', '.join(map(_show, removed))}")
    if grown:
        diff.growth.append(f"{where}: enum values added: {', '.join(map(_show, grown))}")


def _bound(node: Mapping[str, Any], lower: bool) -> tuple[float, bool, str] | None:
    """The tightest bound on one side as (value, exclusive, keyword), or None."""
    inclusive, exclusive = (
        ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
    )
    found = [(node[k], k == exclusive, k) for k in (inclusive, exclusive) if k in node]
    if not found:
        return None
    sign = 1 if lower else -1
    # tighter: further in; at the same value, the exclusive one
    return max(found, key=lambda b: (sign * b[0], b[1]))


def _check_bound(
    old: dict[str, Any], new: dict[str, Any], where: str, diff: _Diff, *, lower: bool
) -> None:
    """minimum/exclusiveMinimum may only go down, maximum/exclusiveMaximum only up."""
    before, after = _bound(old, lower), _bound(new, lower)
    if before == after:
        return
    moved, loosened = ("raised", "lowered") if lower else ("lowered", "raised")
    if after is None:
        assert before is not None
        diff.growth.append(f"{where}: {before[2]} {_show(before[0])} removed")
        return
    if before is None:
        diff.problems.append(f"{where}: {after[2]} {_show(after[0])} added")
        return
    sign = 1 if lower else -1
    tighter = (sign * after[0], after[1]) > (sign * before[0], before[1])
    if before[2] == after[2]:
        change = f"{after[2]} {moved if tighter else loosened} from {_show(before[0])} to {_show(after[0])}"
    else:
        change = (
            f"{'lower' if lower else 'upper'} bound {'tightened' if tighter else 'loosened'} "
            f"from {before[2]} {_show(before[0])} to {after[2]} {_show(after[0])}"
        )
    (diff.problems if tighter else diff.growth).append(f"{where}: {change}")


def _check_size(
    old: dict[str, Any], new: dict[str, Any], where: str, diff: _Diff, low: str, high: str
) -> None:
    """minLength/minItems may only go down, maxLength/maxItems only up."""
    for key, absent, narrower_if_up in ((low, 0, True), (high, math.inf, False)):
        before, after = old.get(key, absent), new.get(key, absent)
        if before == after:
            continue
        tighter = after > before if narrower_if_up else after < before
        if key not in old:
            text = f"{key} {_show(after)} added"
        elif key not in new:
            text = f"{key} {_show(before)} removed"
        else:
            text = f"{key} {'raised' if after > before else 'lowered'} from {before} to {after}"
        (diff.problems if tighter else diff.growth).append(f"{where}: {text}")


# --- one event, the whole contract -------------------------------------------------------------


def _event_name(schema: Schema) -> str:
    const = schema.get("properties", {}).get("type", {}).get("const")
    if isinstance(const, str):
        return const
    identifier = str(schema.get("$id", "event"))
    return identifier.rsplit("/", 1)[-1].removesuffix(".json")


def _diff(old: Schema, new: Schema) -> _Diff:
    event = _event_name(old)
    raw = _Walker(old, new).compare(old, new, "")
    return _Diff(
        problems=[f"{event}: {p}" for p in raw.problems],
        growth=[f"{event}: {g}" for g in raw.growth],
    )


def narrowings(old: Schema, new: Schema) -> list[str]:
    """What a message valid under `old` (one event's schema) might fail under `new`."""
    return _diff(old, new).problems


def compare_contracts(
    old: Mapping[str, Schema], new: Mapping[str, Schema]
) -> tuple[list[str], list[str]]:
    """(narrowings, growth) between two contracts, each a mapping of event type to schema."""
    diff = _Diff()
    for event, schema in old.items():
        if event not in new:
            diff.problems.append(f"{event}: event removed")
        else:
            diff.extend(_diff(schema, new[event]))
    for event in new:
        if event not in old:
            diff.growth.append(f"{event}: event added")
    return diff.problems, diff.growth


def current_schemas() -> dict[str, dict[str, Any]]:
    """The contract as the code defines it now."""
    return {event: event_schema(event) for event in EVENT_MODELS}


def render(schema: Schema) -> str:
    """A schema file's text: event_schema's key order, indent 2, a trailing newline."""
    return json.dumps(schema, indent=2) + "\n"


def load_snapshot(directory: Path) -> dict[str, dict[str, Any]]:
    """Every `<type>.schema.json` of the directory (FileNotFoundError when there is none)."""
    files = sorted(directory.glob(f"*{SUFFIX}"))
    if not files:
        raise FileNotFoundError(f"no *{SUFFIX} in {directory}")
    return {path.name.removesuffix(SUFFIX): json.loads(path.read_text()) for path in files}


def compare(snapshot_dir: Path = SNAPSHOT_DIR) -> tuple[list[str], list[str]]:
    """(narrowings, growth) of the current contract against the snapshot."""
    return compare_contracts(load_snapshot(snapshot_dir), current_schemas())


def stale_files(snapshot_dir: Path = SNAPSHOT_DIR) -> list[str]:
    """Snapshot files that differ from the current contract (missing, changed or extra)."""
    current = {f"{event}{SUFFIX}": render(schema) for event, schema in current_schemas().items()}
    present = {p.name for p in snapshot_dir.glob(f"*{SUFFIX}")}
    stale = [
        name
        for name, text in current.items()
        if name not in present or (snapshot_dir / name).read_text() != text
    ]
    return sorted(stale + [name for name in present if name not in current])


def write_snapshot(directory: Path = SNAPSHOT_DIR) -> list[Path]:
    """Record the current contract: one file per event; files of events gone are deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    current = current_schemas()
    written = []
    for event, schema in current.items():
        path = directory / f"{event}{SUFFIX}"
        path.write_text(render(schema))
        written.append(path)
    for path in directory.glob(f"*{SUFFIX}"):
        if path.name.removesuffix(SUFFIX) not in current:
            path.unlink()
    return written
