"""A realistic synthetic population and HR traffic, for the demo, `mentornet simulate` and benchmarks.

Everything is seeded, so the same arguments always make the same people and the same events.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
    topic: str
    key: bytes
    value: bytes


class Population:
    """People enrolled in programs of one tenant, as HR registration events."""

    def __init__(
        self, tenant: str, programs: int = 2, seed: int = 7, source: str = "hr/simulator"
    ) -> None:
        self.tenant = tenant
        self.programs = [f"program-{i + 1}" for i in range(programs)]
        self.random = random.Random(seed)
        self.source = source
        self.clock = datetime.now(UTC) - timedelta(minutes=5)
        self.mentor_ids: list[tuple[str, str]] = []  # (program, person)

    def _languages(self) -> list[str]:
        chosen = [code for code, share in LANGUAGES if self.random.random() < share]
        return chosen or ["en"]

    def _person(self, role: str, index: int, program: str) -> dict[str, Any]:
        r = self.random
        person_id = f"{role}-{program.split('-')[-1]}-{index:06d}"
        name = f"{r.choice(FIRST)} {r.choice(LAST)}"
        person: dict[str, Any] = {
            "person_id": person_id,
            "program_id": program,
            "display_name": name,
            "email": f"{person_id}@{self.tenant}.example",
            "languages": self._languages(),
            "timezone": r.choice(TIMEZONES),
            "department": r.choice(DEPARTMENTS),
            "seniority": r.randint(5, 10) if role == "mentor" else r.randint(1, 6),
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
        self.mentor_ids.append((program, person["person_id"]))
        return person

    def mentee(self, index: int, program: str | None = None) -> dict[str, Any]:
        program = program or self.programs[index % len(self.programs)]
        person = self._person("mentee", index, program)
        topics = self.random.sample(TOPICS, self.random.randint(1, 3))
        person["goals"] = [{"topic": t, "priority": p + 1} for p, t in enumerate(topics)]
        return person

    def event(self, type_: str, data: dict[str, Any]) -> Record:
        self.clock += timedelta(milliseconds=1)
        body = {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=self.random.getrandbits(128))),
            "source": self.source,
            "type": type_,
            "time": self.clock.isoformat(),
            "datacontenttype": "application/json",
            "tenantid": self.tenant,
            "data": data,
        }
        key = data.get("person_id") or data.get("match_id") or data.get("program_id")
        return Record(type_, str(key).encode(), json.dumps(body).encode())

    def registrations(self, mentors: int, mentees: int) -> Iterator[Record]:
        """Mentors first (as an HR sync would), then mentees."""
        for i in range(mentors):
            yield self.event("mentor-registered", self.mentor(i))
        for i in range(mentees):
            yield self.event("mentee-registered", self.mentee(i))
