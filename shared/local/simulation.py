"""A realistic synthetic population and HR traffic, for the demo, `mentornet simulate`, the
benchmarks and the fault suites.

Everything is seeded, so the same arguments always make the same people and the same events. The
events are data (`Record`: the bytes to publish and what they mean), so a test can publish them
and check the outcome against them.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

TOPICS = [
    "public speaking",
    "leadership",
    "negotiation",
    "python",
    "data analytics",
    "machine learning",
    "product management",
    "project management",
    "career growth",
    "training design",
    "sales",
    "marketing",
    "finance",
    "ux design",
    "cloud architecture",
    "security",
    "hiring",
    "coaching",
    "strategy",
    "writing",
    "kubernetes",
    "javascript",
    "customer success",
    "operations",
    "diversity and inclusion",
    "change management",
    "time management",
    "feedback",
    "mentoring",
    "entrepreneurship",
]
LANGUAGES = [("en", 0.8), ("fr", 0.35), ("de", 0.2), ("es", 0.2), ("pt", 0.1)]
TIMEZONES = [
    "Europe/Paris",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "Asia/Singapore",
    "America/Los_Angeles",
]
DEPARTMENTS = ["engineering", "sales", "marketing", "finance", "hr", "operations", "product"]
FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Marie",
    "Nina",
    "Omar",
    "Li",
    "Sofia",
    "Yusuf",
    "Emma",
    "Hugo",
    "Chloé",
    "Lucas",
    "Inès",
    "Mateo",
    "Aiko",
    "Priya",
    "Kofi",
    "Elena",
    "Jonas",
]
LAST = [
    "Martin",
    "Bernard",
    "Dubois",
    "Smith",
    "Garcia",
    "Müller",
    "Rossi",
    "Silva",
    "Nguyen",
    "Kowalski",
    "Haddad",
    "Okafor",
    "Tanaka",
    "Johansson",
    "Novak",
    "Dupont",
]


@dataclass(frozen=True)
class Record:
    """One Kafka record of simulated traffic, and what it means.

    A valid event has its `event_id` and `data`; a record that breaks the contract has neither,
    and `rejected_as` holds the dead-letter reason codes the contract may answer it with."""

    topic: str
    key: bytes | None
    value: bytes | None
    tenant: str = ""
    event_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    rejected_as: frozenset[str] = frozenset()


class Population:
    """People enrolled in programs of one tenant, as HR registration events."""

    def __init__(
        self, tenant: str, programs: int = 2, seed: int = 7, source: str = "hr/simulator"
    ) -> None:
        self.tenant = tenant
        self.programs = [f"program-{i + 1}" for i in range(programs)]
        self.random = random.Random(seed)
        self.seed = seed
        self.source = source
        self.clock = datetime.now(UTC) - timedelta(minutes=5)
        self.mentor_ids: list[tuple[str, str]] = []  # (program, person)
        self._ghosts = 0

    def _languages(self) -> list[str]:
        chosen = [code for code, share in LANGUAGES if self.random.random() < share]
        return chosen or ["en"]

    def _seniority(self, role: str) -> int:
        return self.random.randint(5, 10) if role == "mentor" else self.random.randint(1, 6)

    def _name(self) -> str:
        return f"{self.random.choice(FIRST)} {self.random.choice(LAST)}"

    def _person(self, role: str, index: int, program: str) -> dict[str, Any]:
        r = self.random
        person_id = f"{role}-{program.split('-')[-1]}-{index:06d}"
        name = self._name()
        person: dict[str, Any] = {
            "person_id": person_id,
            "program_id": program,
            "display_name": name,
            "email": f"{person_id}@{self.tenant}.example",
            "languages": self._languages(),
            "timezone": r.choice(TIMEZONES),
            "department": r.choice(DEPARTMENTS),
            "seniority": self._seniority(role),
        }
        if role == "mentee" and self.mentor_ids and r.random() < 0.1:
            person["manager_id"] = r.choice(self.mentor_ids)[1]
        return person

    def mentor(self, index: int, program: str | None = None) -> dict[str, Any]:
        program = program or self.programs[index % len(self.programs)]
        person = self._person("mentor", index, program)
        topics = self.random.sample(TOPICS, self.random.randint(2, 5))
        person["expertise"] = [{"topic": t, "level": self.random.randint(2, 5)} for t in topics]
        person["capacity"] = self.random.randint(1, 4)
        if wishes := self._two_sided(person["person_id"], topics):
            person["learning_interests"] = wishes
        self.mentor_ids.append((program, person["person_id"]))
        return person

    def mentee(self, index: int, program: str | None = None) -> dict[str, Any]:
        program = program or self.programs[index % len(self.programs)]
        person = self._person("mentee", index, program)
        topics = self.random.sample(TOPICS, self.random.randint(1, 3))
        person["goals"] = [{"topic": t, "priority": p + 1} for p, t in enumerate(topics)]
        if offers := self._two_sided(person["person_id"], topics):
            person["offers"] = offers
        return person

    def _two_sided(self, person_id: str, own: Sequence[str]) -> list[str]:
        """Four in ten people say what they would learn (mentors) or can share (mentees): one
        or two topics besides their own. Drawn apart from the main stream, so adding them left
        everyone else's draws as they were."""
        r = random.Random(f"{self.seed}:{person_id}:two-sided")
        if r.random() >= 0.4:
            return []
        return r.sample([t for t in TOPICS if t not in own], r.randint(1, 2))

    def changed(self, role: str, person: Mapping[str, Any]) -> dict[str, Any]:
        """`person` as HR sends it again after a change: another name, department and seniority."""
        return {
            **person,
            "display_name": self._name(),
            "department": self.random.choice(DEPARTMENTS),
            "seniority": self._seniority(role),
        }

    def event(
        self,
        type_: str,
        data: Mapping[str, Any],
        key: str | None = None,
        source: str | None = None,
        at: datetime | None = None,
    ) -> Record:
        """A CloudEvent of this tenant, keyed by `key` (default: the id its data names first),
        dated `at` (default: the HR stream's own clock)."""
        self.clock += timedelta(milliseconds=1)
        event_id = str(uuid.UUID(int=self.random.getrandbits(128)))
        body = {
            "specversion": "1.0",
            "id": event_id,
            "source": source or self.source,
            "type": type_,
            "time": (at or self.clock).isoformat(),
            "datacontenttype": "application/json",
            "tenantid": self.tenant,
            "data": data,
        }
        key = key or data.get("person_id") or data.get("match_id") or data.get("program_id")
        return Record(
            type_, str(key).encode(), json.dumps(body).encode(), self.tenant, event_id, data
        )

    def registration(self, role: str, person: Mapping[str, Any]) -> Record:
        return self.event(f"{role}-registered", person)

    def registrations(self, mentors: int, mentees: int) -> Iterator[Record]:
        """Mentors first (as an HR sync would), then mentees."""
        for i in range(mentors):
            yield self.registration("mentor", self.mentor(i))
        for i in range(mentees):
            yield self.registration("mentee", self.mentee(i))

    def offboarding(self, person_id: str) -> Record:
        return self.event("person-offboarded", {"person_id": person_id})

    def configuration(self, program: str, source: str | None = None, **timings: Any) -> Record:
        """`program` in continuous mode with its default weights, said explicitly, and these
        relationship timings (`relationship_length_days`...) if given."""
        data = {"program_id": program, "mode": "continuous", "candidates": 20, **timings}
        return self.event("program-configured", data, source=source)

    def invalid(self) -> Record:
        """A record that breaks the contract in one of twelve ways (drawn), about a ghost person.

        Three of them look fine to JSON and would fail only in the database (U+0000 in a name,
        a time PostgreSQL cannot store or compare): the contract must refuse them first."""
        self._ghosts += 1
        ghost = f"ghost-{self._ghosts:06d}"
        person: dict[str, Any] = {
            "person_id": ghost,
            "program_id": self.programs[0],
            "display_name": "Ghost",
            "email": f"{ghost}@x.example",
            "languages": ["en"],
            "timezone": "Europe/Paris",
            "goals": [{"topic": "python", "priority": 1}],
        }
        topic, key, codes = "mentee-registered", ghost, {"invalid_field"}
        value: bytes | None
        match self.random.randrange(12):
            case 0:
                value, codes = b'{"specversion": "1.0", "id": ' + ghost.encode(), {"not_json"}
            case 1:
                del person["email"]
                value, codes = self.event(topic, person).value, {"missing_field"}
            case 2:
                person["languages"] = ["xx"]
                value = self.event(topic, person).value
            case 3:
                value, codes = self.event("mentor-registered", person).value, {"type_mismatch"}
            case 4:
                value = self.event(topic, person).value
                key, codes = "somebody-else", {"key_mismatch"}
            case 5:
                value = b'{"specversion":"1.0","id":"\xff\xfe' + ghost.encode() + b'"}'
                codes = {"invalid_utf8"}
            case 6:
                topic = "match-responded"
                answer = {"match_id": ghost, "person_id": ghost, "decision": "maybe"}
                value = self.event(topic, answer).value
            case 7:
                topic = "session-completed"
                session = {"match_id": ghost, "session_id": ghost, "duration_minutes": 0}
                value = self.event(topic, session).value
            case 8:
                person["display_name"] = "Ghost\u0000"
                value = self.event(topic, person).value
            case 9:
                value = _with_time(self.event(topic, person).value, "2026-01-01T00:00:00")
            case 10:
                value = _with_time(self.event(topic, person).value, "0001-01-01T00:00:00+14:00")
            case _:
                value, codes = None, {"empty"}
        return Record(topic, key.encode(), value, self.tenant, rejected_as=frozenset(codes))


def _with_time(value: bytes | None, time: str) -> bytes:
    """An event's JSON with another `time` (one without a UTC offset, or out of range)."""
    body = json.loads(value or b"{}")
    body["time"] = time
    return json.dumps(body).encode()


class Traffic:
    """What the HR systems of several tenants send over a while: everyone registers at a random
    moment (half the mentors early), registered people change or leave, and some records break
    the contract; tenants interleave. One seed decides it all, so a run can be replayed."""

    def __init__(
        self,
        tenants: Sequence[str],
        *,
        programs: int,
        mentors: int,
        mentees: int,
        seed: int,
        source: str = "hr/simulator",
    ) -> None:
        self.random = random.Random(seed)
        self.populations = {
            t: Population(t, programs=programs, seed=seed * 100 + i, source=source)
            for i, t in enumerate(tenants)
        }
        # (tenant, person) -> (role, data as last sent); the offboarded stay
        self.people: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        drawn: list[tuple[float, str, str, dict[str, Any]]] = []
        for t, pop in self.populations.items():
            for i in range(mentors):
                early = 0.3 if i < mentors // 2 else 1.0  # within the first 30% of the stream
                drawn.append((self.random.random() * early, t, "mentor", pop.mentor(i)))
            drawn += [(self.random.random(), t, "mentee", pop.mentee(i)) for i in range(mentees)]
        drawn.sort(key=lambda x: x[0])
        self._waiting = [(t, role, data) for _, t, role, data in drawn]
        self._registered: list[tuple[str, str]] = []  # (tenant, person), offboarded ones gone

    @property
    def tenants(self) -> list[str]:
        return list(self.populations)

    def program_configs(self, source: str | None = None) -> list[Record]:
        return [
            pop.configuration(p, source) for pop in self.populations.values() for p in pop.programs
        ]

    def stream(
        self, updates: int, offboardings: int, invalid: int, register_by: float = 1.0
    ) -> list[Record]:
        """Registrations, updates, offboardings and invalid records, spread evenly: each pick is
        weighted by what is left of each kind (updates and offboardings need someone enrolled).

        With `register_by` < 1, everyone has registered within that share of the stream and the
        rest only changes a population of fixed size (the steady state of a load test)."""
        others = {"update": updates, "offboard": offboardings, "invalid": invalid}
        early = {k: int(n * register_by) for k, n in others.items()}
        make = {
            "register": self._register,
            "update": self._update,
            "offboard": self._offboard,
            "invalid": self._invalid,
        }
        out: list[Record] = []
        for left in (
            {"register": len(self._waiting), **early},
            {k: others[k] - early[k] for k in others},
        ):
            while any(left.values()):
                kinds = [k for k, n in left.items() if n > 0]
                if not self._registered:
                    kinds = [k for k in kinds if k not in ("update", "offboard")] or ["register"]
                kind = self.random.choices(kinds, [left[k] for k in kinds])[0]
                left[kind] -= 1
                out.append(make[kind]())
        return out

    def _register(self) -> Record:
        tenant, role, data = self._waiting.pop(0)
        self._registered.append((tenant, data["person_id"]))
        self.people[(tenant, data["person_id"])] = (role, data)
        return self.populations[tenant].registration(role, data)

    def _update(self) -> Record:
        tenant, person = self.random.choice(self._registered)
        role, data = self.people[(tenant, person)]
        data = self.populations[tenant].changed(role, data)
        self.people[(tenant, person)] = (role, data)
        return self.populations[tenant].registration(role, data)

    def _offboard(self) -> Record:
        tenant, person = self._registered.pop(self.random.randrange(len(self._registered)))
        return self.populations[tenant].offboarding(person)

    def _invalid(self) -> Record:
        return self.populations[self.random.choice(self.tenants)].invalid()
