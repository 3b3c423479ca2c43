"""`mentornet import`, run as a process against the real broker, PostgreSQL and profiles: a file
with bad rows publishes nothing; --skip-invalid enrols every other row; importing the same file
again changes nothing; the docs' sample files enrol as they are, with what people would learn
or share."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.local.infra import Endpoints
from shared.local.stack import REPO_ROOT
from tests.support import (
    ServiceProcess,
    TopicReader,
    end_offsets,
    of_tenant,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration

ROWS = 10_000
PROGRAM = "leaders-2026"
# line in the file (the header is line 1) -> the bad cell written there
BAD = {
    17: ("expertise", "python:9"),
    2_500: ("email", "ada-at-acme.example"),
    6_001: ("timezone", "Mars/Olympus_Mons"),
    10_001: ("capacity", "0"),  # the last row
}
HEADER = [
    "person_id",
    "display_name",
    "email",
    "languages",
    "timezone",
    "department",
    "seniority",
    "manager_id",
    "expertise",
    "capacity",
]
NAMES = ["Élodie Marchand", "François Lefèvre", "Ada Okafor", "Zoë Ng", "Jérôme Dupré"]
ZONES = ["Europe/Paris", "America/Toronto", "Asia/Tokyo", "UTC"]


def person(line: int) -> str:
    return f"p-{line:05d}"


def write_mentors(path: Path) -> Path:
    """ROWS mentors, varied like a real export, with the BAD cells at their lines."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=HEADER)
        writer.writeheader()
        for line in range(2, ROWS + 2):
            row = {
                "person_id": person(line),
                "display_name": f"{NAMES[line % len(NAMES)]} {line}",
                "email": f"{person(line)}@acme.example",
                "languages": "fr;en" if line % 3 else "en",
                "timezone": ZONES[line % len(ZONES)],
                "department": "engineering" if line % 2 else "",
                "seniority": str(line % 10 + 1),
                "manager_id": person(line - 1) if line % 7 == 0 else "",
                "expertise": f"python:{line % 5 + 1};public speaking:{line % 3 + 1}",
                "capacity": str(line % 4 + 1),
            }
            if line in BAD:
                column, cell = BAD[line]
                row[column] = cell
            writer.writerow(row)
    return path


def mentornet(infra: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an HR team runs it, pointed at the test broker."""
    return subprocess.run(
        [sys.executable, "-m", "shared.ops.cli", *args],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "PYTHONIOENCODING": "utf-8",
        },
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=180,
    )


async def import_file(
    infra: Endpoints, path: Path, tenant: str, *options: str, role: str = "mentor"
) -> subprocess.CompletedProcess[str]:
    """`mentornet import` in a thread: readers in the test keep fetching meanwhile."""
    args = ["import", str(path), "--tenant", tenant, "--program", PROGRAM, "--role", role]
    return await asyncio.to_thread(mentornet, infra, *args, *options)


def listed(result: subprocess.CompletedProcess[str]) -> dict[int, str]:
    """The problems the command listed: line -> column."""
    found = re.findall(r"^line (\d+), column (\w+): ", result.stderr, re.MULTILINE)
    return {int(line): column for line, column in found}


async def enrolments(db: asyncpg.Pool, tenant: str) -> list[Any]:
    return await db.fetch(
        """SELECT person_id, event_id, event_time FROM profiles.enrolments
           WHERE tenant_id = $1 ORDER BY person_id""",
        tenant,
    )


async def consumed_up_to(db: asyncpg.Pool, ends: dict[Any, int]) -> None:
    """Wait until profiles has handled every record below `ends` (its consumed offsets are
    committed with the effects, whichever replica handled them)."""
    partitions = [tp.partition for tp, end in ends.items() if end > 0]
    lasts = [ends[tp] - 1 for tp in ends if ends[tp] > 0]
    await wait_for(
        db,
        """SELECT count(DISTINCT o.partition) = $3 FROM profiles.consumed_offsets o
           JOIN unnest($1::int[], $2::bigint[]) AS e(partition, last)
             ON o.partition = e.partition AND o."offset" >= e.last
           WHERE o.topic = 'mentor-registered'""",
        partitions,
        lasts,
        len(partitions),
        timeout=60,
    )


SIGNED_TENANT, SIGNING_KEY = unique("signed"), "a-tenant-secret"


@pytest.fixture(scope="module")
async def profiles(service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    keys = json.dumps({SIGNED_TENANT: SIGNING_KEY})
    async with running(["profiles"], {**service_env, "INGRESS_SIGNING_KEYS": keys}) as procs:
        yield procs["profiles"]


class Announced:
    """A tenant's `enrolment-updated` events read so far: event id -> person, each record parsed
    once. The outbox relay may publish an event twice (after a crash, by design): a copy has the
    id of the original."""

    def __init__(self) -> None:
        self.people: dict[str, str] = {}
        self.parsed = 0

    def add(self, records: list[Any]) -> set[str]:
        """The people announced so far (for TopicReader.collect's `until`)."""
        for record in records[self.parsed :]:
            event = json.loads(record.value)
            self.people[event["id"]] = event["data"]["person_id"]
        self.parsed = len(records)
        return set(self.people.values())


@pytest.fixture(scope="module")
def mentors_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mentors(tmp_path_factory.mktemp("import") / "mentors.csv")


async def test_bad_rows_are_listed_and_nothing_is_published(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess, mentors_file: Path
) -> None:
    tenant = unique("import")
    async with TopicReader(infra.bootstrap_servers, "mentor-registered") as reader:
        result = await import_file(infra, mentors_file, tenant)
        leaked = await reader.drain(2, keep=of_tenant(tenant))
    assert result.returncode == 1, result.stdout + result.stderr
    assert listed(result) == {line: column for line, (column, _) in BAD.items()}
    assert "line 17, column expertise: 'python:9': level must be between 1 and 5" in result.stderr
    assert f"{len(BAD)} of {ROWS} rows are invalid; nothing was published" in result.stderr
    assert result.stdout == ""
    assert leaked == []  # not one record of the tenant reached the topic
    assert await enrolments(db, tenant) == []


async def test_skip_invalid_enrols_the_rest_and_a_second_import_changes_nothing(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess, mentors_file: Path
) -> None:
    tenant = unique("import")
    valid = ROWS - len(BAD)
    done = (
        f"published {valid} mentor registrations for tenant {tenant}, program {PROGRAM} "
        f"({len(BAD)} rows skipped)"
    )
    async with TopicReader(infra.bootstrap_servers, "enrolment-updated") as updates:
        first = await import_file(infra, mentors_file, tenant, "--skip-invalid")
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.strip().splitlines()[-1] == done
        assert listed(first) == {line: column for line, (column, _) in BAD.items()}
        # Every valid row enrolled, and announced once; none of the skipped ones.
        await wait_for(
            db,
            "SELECT count(*) = $2 FROM profiles.enrolments WHERE tenant_id = $1",
            tenant,
            valid,
            timeout=60,
        )
        announced = Announced()
        await updates.collect(
            lambda rs: len(announced.add(rs)) >= valid, keep=of_tenant(tenant), timeout=60
        )
        stored = await enrolments(db, tenant)
        expected = {person(line) for line in range(2, ROWS + 2) if line not in BAD}
        assert {r["person_id"] for r in stored} == set(announced.people.values()) == expected

        again = await import_file(infra, mentors_file, tenant, "--skip-invalid")
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.strip().splitlines()[-1] == done
        # Wait until profiles has handled every record of the second import, then look.
        await consumed_up_to(db, await end_offsets(infra.bootstrap_servers, ["mentor-registered"]))
        late = Announced()
        late.add(await updates.drain(2, keep=of_tenant(tenant)))
    assert set(late.people) <= set(announced.people)  # no new event: all duplicates
    assert await enrolments(db, tenant) == stored  # same event ids, same times: untouched


async def test_the_docs_sample_files_enrol_as_they_are(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess
) -> None:
    tenant = unique("sample")
    samples = REPO_ROOT / "docs" / "samples"
    async with TopicReader(infra.bootstrap_servers, "enrolment-updated") as updates:
        for role in ("mentor", "mentee"):
            result = await import_file(infra, samples / f"{role}s.csv", tenant, role=role)
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stderr == ""  # no warning either: the columns are the contract's
            assert f"for tenant {tenant}, program {PROGRAM} (0 rows skipped)" in result.stdout
        announced = Announced()
        published = await updates.collect(
            lambda rs: len(announced.add(rs)) >= 12, keep=of_tenant(tenant), timeout=60
        )
    # what people would learn (mentors) or share (mentees) goes on to matching and notifications
    data = {d["person_id"]: d for d in (json.loads(r.value)["data"] for r in published)}
    assert data["p-1001"]["learning_interests"] == ["data visualisation", "spanish"]
    assert data["p-2001"]["offers"] == ["data visualisation", "spanish"]
    assert "learning_interests" not in data["p-1002"] and "offers" not in data["p-2002"]
    await wait_for(db, "SELECT count(*) = 12 FROM profiles.enrolments WHERE tenant_id = $1", tenant)
    rows = await db.fetch(
        """SELECT person_id, role, display_name, languages, expertise, goals, capacity
           FROM profiles.enrolments WHERE tenant_id = $1 AND program_id = $2""",
        tenant,
        PROGRAM,
    )
    by_id = {r["person_id"]: r for r in rows}
    assert sum(r["role"] == "mentor" for r in rows) == 6
    assert by_id["p-1001"]["display_name"] == "Élodie Marchand"
    assert by_id["p-1001"]["languages"] == ["fr", "en"] and by_id["p-1001"]["capacity"] == 3
    assert by_id["p-2002"]["display_name"] == "Noël Bérubé" and by_id["p-2002"]["role"] == "mentee"


async def test_a_tenant_that_signs_its_events_imports_with_its_key(
    infra: Endpoints, db: asyncpg.Pool, profiles: ServiceProcess, tmp_path: Path
) -> None:
    key_file = tmp_path / "signing.key"
    key_file.write_text(SIGNING_KEY + "\n")
    sample = REPO_ROOT / "docs" / "samples" / "mentees.csv"
    result = await import_file(
        infra, sample, SIGNED_TENANT, "--signing-key-file", str(key_file), role="mentee"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # profiles refuses this tenant's unsigned events (bad_signature): these were signed.
    await wait_for(
        db, "SELECT count(*) = 6 FROM profiles.enrolments WHERE tenant_id = $1", SIGNED_TENANT
    )
