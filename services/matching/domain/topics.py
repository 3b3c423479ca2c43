"""Topics as people type them, made comparable, and how close two topics are.

A name is normalised (case, spacing, punctuation), then looked up among the taxonomy's names
(English, French, aliases): the topic it stands for is its key. A name the taxonomy does not know
is a topic of its own. How much expertise in one topic covers a goal in another is its `credit`:

    the same topic                                  1
    expertise narrower than the goal (django for python), per level down   NARROWER
    expertise broader than the goal (python for django), per level up      BROADER
    related topics (public speaking, storytelling)                         RELATED
    topics sharing a broader one (python and java)                         SIBLING

the largest that applies. The shipped topics are in `default_topics`; a program adds its own in
`program-configured` (`topics`), which `Taxonomy.extended` merges in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from services.matching.domain.default_topics import DEFAULT_TOPICS
from shared.contract.events import TopicDefinition

_SEPARATORS = re.compile(r"[\s_\-/]+")

EXACT = 1.0
NARROWER = 0.8  # expertise one level narrower than the goal: a django expert knows python well
BROADER = 0.5  # one level broader: a python expert knows some django
RELATED = 0.6
SIBLING = 0.3
MAX_DEPTH = 3  # levels followed up and down
EXTENSIONS_KEPT = 256  # programs' taxonomies kept built (each program's topics, as configured)


@lru_cache(maxsize=1 << 16)  # the same few names come back for every pair explained
def normalise_topic(name: str) -> str:
    """'  Public-Speaking ' and 'public speaking' are one name."""
    return _SEPARATORS.sub(" ", name.strip().lower()).strip(" .")


@dataclass(frozen=True)
class _Topic:
    key: str
    names: tuple[str, ...]  # every normalised name, the key first
    broader: frozenset[str]
    related: frozenset[str]


class Taxonomy:
    """Topics, their names, broader and related topics; credits between names are cached."""

    def __init__(self, topics: Iterable[_Topic], version: str) -> None:
        self.version = version  # identifies the content: caches key on it
        self._topics = {t.key: t for t in topics}
        self._key_of: dict[str, str] = {}
        for topic in self._topics.values():
            for name in topic.names:
                self._key_of.setdefault(name, topic.key)
        self._narrower: dict[str, set[str]] = {}
        self._related: dict[str, set[str]] = {}
        for topic in self._topics.values():
            for parent in topic.broader:
                self._narrower.setdefault(parent, set()).add(topic.key)
            for other in topic.related:  # related both ways
                self._related.setdefault(topic.key, set()).add(other)
                self._related.setdefault(other, set()).add(topic.key)
        self._credits: dict[tuple[str, bool], dict[str, float]] = {}
        self._extensions: dict[str, Taxonomy] = {}  # by the programs' topics, as JSON

    def __len__(self) -> int:
        return len(self._topics)

    def key(self, name: str) -> str:
        """The topic a typed name stands for (its normalised self when unknown)."""
        normal = normalise_topic(name)
        return self._key_of.get(normal, normal)

    def names(self, key: str) -> tuple[str, ...]:
        topic = self._topics.get(key)
        return topic.names if topic else (key,)

    def credit(self, goal: str, expertise: str) -> float:
        """How much expertise in one topic (as typed) covers a goal in another (as typed)."""
        return self.credits(goal).get(self.key(expertise), 0.0)

    def credits(self, goal: str) -> Mapping[str, float]:
        """Every topic key whose expertise covers `goal` (as typed), with its credit."""
        return self._credit_map(self.key(goal), towards_goal=True)

    def covering(self, expertise: str) -> Mapping[str, float]:
        """The other way round: every goal key that expertise in `expertise` covers, with its
        credit (mutual learning: which of a mentor's interests a mentee's offer covers)."""
        return self._credit_map(self.key(expertise), towards_goal=False)

    def credits_by_name(self, goal: str) -> dict[str, float]:
        """`credits`, for every normalised name of each topic: what a pool indexed by the names
        people typed looks up."""
        return self._by_name(self.credits(goal))

    def covering_by_name(self, expertise: str) -> dict[str, float]:
        return self._by_name(self.covering(expertise))

    def _by_name(self, credits: Mapping[str, float]) -> dict[str, float]:
        return {name: c for key, c in credits.items() for name in self.names(key)}

    def _credit_map(self, key: str, towards_goal: bool) -> dict[str, float]:
        cached = self._credits.get((key, towards_goal))
        if cached is not None:
            return cached
        down, up = (NARROWER, BROADER) if towards_goal else (BROADER, NARROWER)
        found: dict[str, float] = {}

        def give(other: str, credit: float) -> None:
            if credit > found.get(other, 0.0):
                found[other] = credit

        for other in self._related.get(key, ()):
            give(other, RELATED)
        parents = self._broader(key)
        for parent in parents:
            for sibling in self._narrower.get(parent, ()):
                give(sibling, SIBLING)
        for depth, level in enumerate(self._levels(key, self._narrower_of), start=1):
            for other in level:
                give(other, down**depth)
        for depth, level in enumerate(self._levels(key, self._broader), start=1):
            for other in level:
                give(other, up**depth)
        found[key] = EXACT
        self._credits[(key, towards_goal)] = found
        return found

    def _broader(self, key: str) -> Iterable[str]:
        topic = self._topics.get(key)
        return topic.broader if topic else ()

    def _narrower_of(self, key: str) -> Iterable[str]:
        return self._narrower.get(key, ())

    @staticmethod
    def _levels(key: str, step: Callable[[str], Iterable[str]]) -> list[set[str]]:
        """The topics 1, 2, ... MAX_DEPTH steps away from `key` along `step` (narrower or broader)."""
        levels, seen, frontier = [], {key}, {key}
        for _ in range(MAX_DEPTH):
            nxt = {o for k in frontier for o in step(k)} - seen
            if not nxt:
                break
            levels.append(nxt)
            seen |= nxt
            frontier = nxt
        return levels

    def extended(self, definitions: Sequence[TopicDefinition]) -> Taxonomy:
        """This taxonomy with a program's topics: a new topic, or more names and relations for
        one it has (named by any of its names). Built once per content."""
        if not definitions:
            return self
        text = json.dumps([d.model_dump(mode="json") for d in definitions], sort_keys=True)
        if text not in self._extensions:
            if len(self._extensions) >= EXTENSIONS_KEPT:
                self._extensions.clear()
            self._extensions[text] = self._with(definitions, text)
        return self._extensions[text]

    def _with(self, definitions: Sequence[TopicDefinition], text: str) -> Taxonomy:
        topics = dict(self._topics)
        key_of = dict(self._key_of)

        def keys(values: Iterable[str]) -> frozenset[str]:
            return frozenset(key_of.get(normalise_topic(v), normalise_topic(v)) for v in values)

        for definition in definitions:
            name = normalise_topic(definition.topic)
            key = key_of.get(name, name)
            old = topics.get(key)
            added = [name, *map(normalise_topic, definition.names.values())]
            added += map(normalise_topic, definition.aliases)
            names = tuple(dict.fromkeys([*(old.names if old else (key,)), *added]))
            for n in names:
                key_of.setdefault(n, key)
            topics[key] = _Topic(
                key,
                names,
                ((old.broader if old else frozenset()) | keys(definition.broader)) - {key},
                ((old.related if old else frozenset()) | keys(definition.related)) - {key},
            )
        version = hashlib.sha256(f"{self.version}|{text}".encode()).hexdigest()[:16]
        return Taxonomy(topics.values(), version)


def _shipped() -> Taxonomy:
    topics: list[_Topic] = []
    keys = {normalise_topic(row[0]) for row in DEFAULT_TOPICS}
    for english, french, broader, related, aliases in DEFAULT_TOPICS:
        key = normalise_topic(english)
        for other in (*broader, *related):
            assert normalise_topic(other) in keys, f"{english}: unknown topic {other!r}"
        names = tuple(dict.fromkeys(normalise_topic(n) for n in (english, french, *aliases)))
        topics.append(
            _Topic(
                key,
                names,
                frozenset(map(normalise_topic, broader)),
                frozenset(map(normalise_topic, related)),
            )
        )
    return Taxonomy(topics, "default")


DEFAULT = _shipped()
