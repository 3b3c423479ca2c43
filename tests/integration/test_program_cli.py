"""`mentornet program configure|show` run as a process against the real broker, the real database
and the real matching service: the diff against what is in force, the event matching applies,
the wait until it is in force, nothing published for a bad file, and a program's figures."""

from __future__ import annotations

import asyncio
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
import yaml

from shared.contract.envelope import STRUCTURED, decode_record
from shared.contract.events import ProgramConfigured
from shared.local.infra import Endpoints
from shared.local.stack import REPO_ROOT
from tests.support import (
    ServiceProcess,
    TopicReader,
    enrolment_updated,
    fresh_group,
    ingress,
    of_tenant,
    publish_raw,
    running,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration

SAMPLE = REPO_ROOT / "docs" / "samples" / "program.yaml"
SAMPLE_PROGRAM = "leaders-2026"
SIGNED = unique("pcli-signed")  # a tenant whose events matching accepts only signed
SIGNING_KEY = "the-tenant-key"


@pytest.fixture(scope="module")
async def matching(infra: Endpoints, service_env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    """matching in a consumer group of its own: it alone applies what these tests publish."""
    group = await fresh_group(infra.bootstrap_servers, "matching", "program-cli")
    env = {**service_env, "INGRESS_SIGNING_KEYS": json.dumps({SIGNED: SIGNING_KEY})}
    async with running(["matching"], env, groups={"matching": group}) as procs:
        await procs["matching"].wait_assigned()
        yield procs["matching"]


def mentornet(infra: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    """`mentornet program ...` exactly as a program manager runs it."""
    return subprocess.run(
        [sys.executable, "-m", "shared.ops.cli", "program", *args],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "DATABASE_URL": infra.database_url,
            "COLUMNS": "250",
            "PYTHONIOENCODING": "utf-8",
        },
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )


async def cli(infra: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    """Without blocking the event loop: a TopicReader of this test keeps fetching meanwhile."""
    return await asyncio.to_thread(mentornet, infra, *args)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def changed(stdout: str) -> dict[str, tuple[str, str]]:
    """The diff table's rows: setting -> (in force, new)."""
    rows = {}
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 3 and cells[0] != "setting" and re.fullmatch(r"[a-z_.]+", cells[0]):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


async def stored(db: asyncpg.Pool, tenant: str, program: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT config, updated_at FROM matching.programs WHERE tenant_id = $1 AND program_id = $2",
        tenant,
        program,
    )


def as_config(raw: Any) -> dict[str, Any]:
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


async def test_configure_shows_the_diff_publishes_and_waits_until_in_force(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess, tmp_path: Path
) -> None:
    tenant = unique("pcli")
    sample = ProgramConfigured.model_validate(yaml.safe_load(SAMPLE.read_text())).model_dump(
        mode="json"
    )
    async with TopicReader(infra.bootstrap_servers, "program-configured") as reader:
        # 1. A new program: compared with matching's defaults.
        out = ok(await cli(infra, "configure", str(SAMPLE), "--tenant", tenant))
        assert (
            f"program {SAMPLE_PROGRAM} of tenant {tenant}: not configured yet; defaults in force"
            in out
        )
        assert changed(out) == {
            "weights.topic_fit": ("0.4", "0.5"),
            "weights.timezone": ("0.1", "0.2"),
            "weights.department": ("0.05", "0.1"),
            "rules.max_timezone_difference_hours": ("none", "6"),
            "rules.department": ("any", "cross"),
            "rules.min_seniority_gap": ("none", "1"),
            "response_deadline_hours": ("72", "48"),
            "checkin_days": ("30, 90", "14, 60, 120"),
            "stall_after_days": ("21", "14"),
        }
        assert "9 setting(s) change" in out
        assert out.rstrip().splitlines()[-1].startswith("in force")
        # In force when the command returns, not later: the command waited for matching.
        first = await stored(db, tenant, SAMPLE_PROGRAM)
        assert first is not None and as_config(first["config"]) == sample

        # What went out: one structured CloudEvent, keyed as the registry says, that matching
        # read as it is (the row's updated_at is the event's time).
        records = await reader.collect(lambda rs: len(rs) >= 1, keep=of_tenant(tenant))
        (record,) = records
        assert record.key == SAMPLE_PROGRAM.encode()
        assert ("content-type", STRUCTURED.encode()) in list(record.headers)
        event = decode_record(
            record.value, tuple(record.headers), topic="program-configured", key=record.key
        )
        assert event.source == "mentornet/cli" and event.id in out
        assert event.time == first["updated_at"]

        # 2. One setting changed: the diff lists exactly that one.
        edited = tmp_path / "program.yaml"
        text = SAMPLE.read_text()
        assert text.count("stall_after_days: 14") == 1
        edited.write_text(text.replace("stall_after_days: 14", "stall_after_days: 10"))
        out = ok(await cli(infra, "configure", str(edited), "--tenant", tenant))
        assert "configuration in force since" in out
        assert changed(out) == {"stall_after_days": ("14", "10")}
        assert "1 setting(s) change" in out
        second = await stored(db, tenant, SAMPLE_PROGRAM)
        assert second is not None and as_config(second["config"]) == {
            **sample,
            "stall_after_days": 10,
        }
        assert second["updated_at"] > first["updated_at"]

        # 3. The same file again: no change, nothing published, nothing touched.
        out = ok(await cli(infra, "configure", str(edited), "--tenant", tenant))
        assert "no change" in out and "nothing to publish" in out and changed(out) == {}
        assert await stored(db, tenant, SAMPLE_PROGRAM) == second
        assert len(await reader.drain(2.0, keep=of_tenant(tenant))) == 1  # the second run's only


async def test_a_bad_file_or_a_dry_run_publishes_nothing(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess, tmp_path: Path
) -> None:
    tenant = unique("pcli")
    bad = tmp_path / "program.yaml"
    bad.write_text(
        "program_id: leaders-2026\n"
        "rules:\n"
        "  department: sideways\n"
        "checkin_days: [30, 4000]\n"
        "relationship_length_days: 180\n"
    )
    dry = tmp_path / "program.json"
    dry.write_text(json.dumps({"program_id": "leaders-2026", "mode": "cohort"}))
    async with TopicReader(infra.bootstrap_servers, "program-configured") as reader:
        result = await cli(infra, "configure", str(bad), "--tenant", tenant)
        assert result.returncode == 1 and result.stdout == ""
        (line,) = result.stderr.strip().splitlines()  # one line, no traceback
        assert "line 3: 'rules.department': Input should be 'any', 'cross' or 'same'" in line
        assert "line 4: 'checkin_days.1': Input should be less than or equal to 3650" in line

        out = ok(await cli(infra, "configure", str(dry), "--tenant", tenant, "--dry-run"))
        assert changed(out) == {"mode": ("continuous", "cohort")}
        assert "dry run: nothing published" in out

        assert await reader.drain(3.0, keep=of_tenant(tenant)) == []
    assert await stored(db, tenant, "leaders-2026") is None


async def test_the_wait_ends_with_matching_s_answer_not_with_the_publishing(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess, tmp_path: Path
) -> None:
    """Unsigned, the event of a tenant that must sign is dead-lettered by matching: the command
    says so and fails, instead of claiming success once the broker has the record. Signed with
    the tenant's key (--signing-key-file), it is in force."""
    result = await cli(infra, "configure", str(SAMPLE), "--tenant", SIGNED, "--timeout", "20")
    assert result.returncode == 1, result.stdout
    assert "published program-configured" in result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert "matching rejected event" in line and "bad_signature" in line
    assert await stored(db, SIGNED, SAMPLE_PROGRAM) is None

    key = tmp_path / "key"
    key.write_text(f"{SIGNING_KEY}\n")
    signed = await cli(
        infra, "configure", str(SAMPLE), "--tenant", SIGNED, "--signing-key-file", str(key)
    )
    ok(signed)
    assert await stored(db, SIGNED, SAMPLE_PROGRAM) is not None


async def test_show_tells_where_a_program_stands(
    infra: Endpoints, db: asyncpg.Pool, matching: ServiceProcess, tmp_path: Path
) -> None:
    tenant, program = unique("pcli"), "mentoring-101"
    settings = tmp_path / "program.json"
    settings.write_text(json.dumps({"program_id": program, "response_deadline_hours": 48}))
    ok(await cli(infra, "configure", str(settings), "--tenant", tenant))

    # Two mentors, four places; three mentees get a proposal, one speaks no shared language and
    # waits; then one proposal is accepted by both sides.
    people = [
        enrolment_updated(tenant, "mentor", "alice", program),
        enrolment_updated(tenant, "mentor", "bob", program, capacity=3),
        *(enrolment_updated(tenant, "mentee", m, program) for m in ("m1", "m2", "m3")),
        enrolment_updated(tenant, "mentee", "m4", program, languages=["de"]),
    ]
    await publish_raw(infra.bootstrap_servers, people)
    await wait_for(
        db,
        """SELECT (SELECT count(*) FROM matching.matches WHERE tenant_id = $1) = 3
              AND (SELECT count(*) FROM matching.mentees WHERE tenant_id = $1) = 4""",
        tenant,
    )
    match = await db.fetchrow(
        "SELECT match_id, mentee_id, mentor_id FROM matching.matches WHERE tenant_id = $1 LIMIT 1",
        tenant,
    )
    await publish_raw(
        infra.bootstrap_servers,
        [
            ingress(
                "match-responded",
                tenant,
                match["match_id"],
                {"match_id": match["match_id"], "person_id": who, "decision": "accepted"},
            )
            for who in (match["mentee_id"], match["mentor_id"])
        ],
    )
    await wait_for(
        db,
        "SELECT status = 'confirmed' FROM matching.matches WHERE match_id = $1",
        match["match_id"],
    )

    # The mentor with the free place pauses: the place stays free, but nobody can take it.
    pausing = await db.fetchval(
        "SELECT person_id FROM matching.mentors WHERE tenant_id = $1 AND load < capacity", tenant
    )
    await publish_raw(
        infra.bootstrap_servers,
        [
            ingress(
                "mentor-availability",
                tenant,
                pausing,
                {"person_id": pausing, "program_id": program, "available": False},
            )
        ],
    )
    await wait_for(
        db,
        "SELECT paused_until IS NOT NULL FROM matching.availability "
        "WHERE tenant_id = $1 AND person_id = $2",
        tenant,
        pausing,
    )

    figures = json.loads(ok(await cli(infra, "show", program, "--tenant", tenant, "--json")))
    config = figures["configuration"]
    assert config["configured"] is True
    assert config["settings"]["response_deadline_hours"] == 48
    assert config["settings"]["weights.topic_fit"] == 0.4  # a default, as matching applies it
    assert sum(config["weight_shares"].values()) == pytest.approx(1)
    mentors = figures["mentors"]
    assert {k: v for k, v in mentors.items() if k != "top"} == {
        "enrolled": 2,
        "paused": 1,
        "places": 4,
        "taken": 3,
        "free": 1,
        "free_not_paused": 0,
    }
    assert {m["person_id"] for m in mentors["top"]} == {"alice", "bob"}
    first, second = mentors["top"]  # most free places first: the paused mentor's
    assert (first["person_id"], first["free"], first["paused"]) == (pausing, 1, True)
    assert second["free"] == 0 and second["paused"] is False
    mentees = figures["mentees"]
    assert {k: mentees[k] for k in ("enrolled", "waiting", "proposed", "matched", "done")} == {
        "enrolled": 4,
        "waiting": 1,
        "proposed": 2,
        "matched": 1,
        "done": 0,
    }
    truth = await db.fetchrow(
        """SELECT (SELECT waiting_since FROM matching.mentees
                   WHERE tenant_id = $1 AND person_id = 'm4') AS waiting_since,
                  (SELECT min(proposed_at) FROM matching.matches
                   WHERE tenant_id = $1 AND status = 'proposed') AS oldest,
                  (SELECT min(expires_at) FROM matching.matches
                   WHERE tenant_id = $1 AND status = 'proposed') AS expiry""",
        tenant,
    )
    iso = {k: v.isoformat().replace("+00:00", "Z") for k, v in truth.items()}
    assert mentees["oldest_waiting_since"] == iso["waiting_since"]
    assert figures["proposals"] == {
        "open": 2,
        "oldest_proposed_at": iso["oldest"],
        "next_expiry": iso["expiry"],
    }
    assert figures["relationships"] == {"active": 1, "ended": 0}

    text = ok(await cli(infra, "show", program, "--tenant", tenant))
    assert f"program {program} of tenant {tenant}: configuration in force since" in text
    assert re.search(r"^\s*response_deadline_hours\s+48\s*$", text, re.MULTILINE)
    assert re.search(r"weights\.topic_fit\s+0\.4 \(38% of the score\)", text)
    assert (
        "mentors: 2 (1 paused), 4 places: 3 taken, 1 free (1 of them held by paused mentors)"
        in text
    )
    assert "mentees: 4 (1 waiting, 2 proposed, 1 matched, 0 done)" in text
    assert "open proposals: 2" in text and "next to expire" in text
    assert "relationships: 1 active, 0 ended" in text


async def test_an_unknown_program_is_an_error(infra: Endpoints) -> None:
    tenant = unique("pcli")
    result = await cli(infra, "show", "no-such-program", "--tenant", tenant)
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert f"unknown program 'no-such-program' in tenant '{tenant}'" in line
