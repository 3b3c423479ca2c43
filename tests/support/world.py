"""The fault suites' world: a seeded HR stream of several tenants (built by
`shared.local.simulation.Traffic`), the mentoring apps that answer its proposals, and what the
end state must therefore be (the oracle the suites check against)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from shared.local.simulation import Record, Traffic
from tests.support.fault import Follower, Invalid, Publisher, Sendable

HR_SOURCE = "hr/fault-suite"
APP_SOURCE = "app/fault-suite"


@dataclass
class Planned:
    """A record to publish, and what it is: a valid event (tenant, event id) or an invalid one."""

    record: Sendable
    valid: tuple[str, str] | None = None
    invalid: Invalid | None = None


class World:
    """A seeded population of several tenants and programs: the HR stream that builds it, the
    app traffic that answers its proposals, and what the end state must therefore be.

    Every choice is drawn from seeded generators, so a failing run can be replayed."""

    def __init__(
        self,
        prefix: str,
        *,
        tenants: int,
        programs: int,
        mentors: int,
        mentees: int,
        seed: int,
        decline: float = 0.15,
        ignore: float = 0.1,
        session: float = 0.4,
    ) -> None:
        self.traffic = Traffic(
            [f"{prefix}-t{i}" for i in range(tenants)],
            programs=programs,
            mentors=mentors,
            mentees=mentees,
            seed=seed,
            source=HR_SOURCE,
        )
        self.tenants = self.traffic.tenants
        self.rng = random.Random(seed)  # the apps' answers
        self.decline, self.ignore, self.session = decline, ignore, session
        # what the HR stream must leave: (tenant, program, person) -> (role, event id)
        self.enrolments: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.offboarded: set[tuple[str, str]] = set()
        self.valid_hr: set[tuple[str, str]] = set()
        self.valid_app: set[tuple[str, str]] = set()
        self.invalid: list[Invalid] = []
        # app side, filled by `react`
        self.proposals: dict[str, dict[str, Any]] = {}  # match id -> proposal data + tenant
        self.proposal_event_ids: dict[str, set[str]] = {}
        self.confirmed: set[str] = set()
        self.ended: dict[str, str] = {}
        self.answers: dict[str, list[tuple[str, str]]] = {}  # match id -> (person, decision)
        self.sessions: dict[str, int] = {}
        self.last_proposal_at = time.monotonic()

    @property
    def people(self) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
        """(tenant, person) -> (role, data as last registered), the offboarded included."""
        return self.traffic.people

    # ---------------------------------------------------------------- HR stream

    def program_configs(self) -> list[Planned]:
        """Every program in continuous mode with its default weights, said explicitly."""
        return [self._plan(r, self.valid_app) for r in self.traffic.program_configs(APP_SOURCE)]

    def hr_stream(
        self, updates: int, offboardings: int, invalid: int, register_by: float = 1.0
    ) -> list[Planned]:
        """The simulation's HR stream (`Traffic.stream`), noted in the oracle as it is planned."""
        records = self.traffic.stream(updates, offboardings, invalid, register_by)
        return [self._plan(r, self.valid_hr) for r in records]

    def _plan(self, record: Record, valid: set[tuple[str, str]]) -> Planned:
        sent: Sendable = (record.topic, record.key, record.value, None)
        if record.event_id is None:
            invalid = Invalid(record.topic, record.key, record.value, record.rejected_as)
            self.invalid.append(invalid)
            return Planned(sent, invalid=invalid)
        tenant, data = record.tenant, record.data
        if record.topic == "person-offboarded":
            person = data["person_id"]
            self.offboarded.add((tenant, person))
            for key in [k for k in self.enrolments if k[0] == tenant and k[2] == person]:
                del self.enrolments[key]
        elif record.topic.endswith("-registered"):
            role = record.topic.removesuffix("-registered")
            self.enrolments[(tenant, data["program_id"], data["person_id"])] = (
                role,
                record.event_id,
            )
        valid.add((tenant, record.event_id))
        return Planned(sent, valid=(tenant, record.event_id))

    # ---------------------------------------------------------------- app traffic

    def _app_event(self, tenant: str, type_: str, data: dict[str, Any], key: str) -> Sendable:
        population = self.traffic.populations[tenant]
        event = population.event(type_, data, key=key, source=APP_SOURCE)
        assert event.event_id is not None
        self.valid_app.add((tenant, event.event_id))
        return (type_, event.key, event.value, None)

    def react(self, record: Any) -> list[Sendable]:
        """What the mentoring apps answer to a record of match-proposed/-confirmed/-ended."""
        try:
            event = json.loads(record.value)
        except ValueError:
            return []
        tenant = event.get("tenantid")
        if tenant not in self.traffic.populations:
            return []
        data = event["data"]
        match_id = data["match_id"]
        out: list[Sendable] = []
        if record.topic == "match-proposed":
            self.proposal_event_ids.setdefault(match_id, set()).add(event["id"])
            if match_id in self.proposals:
                return []  # a republished copy
            self.proposals[match_id] = {**data, "tenant": tenant}
            self.last_proposal_at = time.monotonic()
            draw = self.rng.random()
            if draw < self.ignore:
                return []
            if draw < self.ignore + self.decline:
                answers = [(data["mentee_id"], "declined")]
            else:
                answers = [(data["mentee_id"], "accepted"), (data["mentor_id"], "accepted")]
            for person, decision in answers:
                self.answers.setdefault(match_id, []).append((person, decision))
                out.append(
                    self._app_event(
                        tenant,
                        "match-responded",
                        {"match_id": match_id, "person_id": person, "decision": decision},
                        match_id,
                    )
                )
        elif record.topic == "match-confirmed":
            if match_id in self.confirmed:
                return []
            self.confirmed.add(match_id)
            if self.rng.random() < self.session:
                self.sessions[match_id] = self.sessions.get(match_id, 0) + 1
                session = {
                    "match_id": match_id,
                    "session_id": f"s-{match_id}",
                    "duration_minutes": self.rng.randint(20, 90),
                    "mentor_rating": self.rng.randint(1, 5),
                    "mentee_rating": self.rng.randint(1, 5),
                }
                out.append(self._app_event(tenant, "session-completed", session, match_id))
        elif record.topic == "match-ended":
            self.ended.setdefault(match_id, data["outcome"])
        return out

    def touches_offboarded(self, match: dict[str, Any]) -> bool:
        tenant = match["tenant_id"] if "tenant_id" in match else match["tenant"]
        return bool({(tenant, match["mentee_id"]), (tenant, match["mentor_id"])} & self.offboarded)


class Responder:
    """The mentoring apps: follow proposals and confirmations, answer them as `World.react` says."""

    TOPICS = ("match-proposed", "match-confirmed", "match-ended")

    def __init__(self, world: World, bootstrap: str, start: dict[TopicPartition, int]) -> None:
        self.world = world
        self.follower = Follower(bootstrap, self.TOPICS)
        self.follower.positions = dict(start)
        self.publisher = Publisher(bootstrap)
        self.published = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        while not self._stop.is_set():
            out: list[Sendable] = []
            for record in await self.follower.poll():
                out += self.world.react(record)
            if out:
                await self.publisher.send(out)
                self.published += len(out)

    def start(self) -> Responder:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 30)
        await self.follower.close()
        await self.publisher.close()


async def publish_paced(
    publisher: Publisher,
    planned: Sequence[Planned],
    rate: float,
    chunk: int = 50,
) -> float:
    """Publish at `rate` records per second (in chunks); fills in where invalid records landed.
    Returns the seconds it took."""
    started = time.monotonic()
    for i in range(0, len(planned), chunk):
        part = planned[i : i + chunk]
        metadata = await publisher.send([p.record for p in part])
        for p, meta in zip(part, metadata, strict=True):
            if p.invalid is not None:
                p.invalid.where = (meta.topic, meta.partition, meta.offset)
        ahead = started + (i + len(part)) / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return time.monotonic() - started
