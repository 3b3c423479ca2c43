"""Kafka over SASL_SSL with SCRAM-SHA-512 (and PostgreSQL over TLS), end to end on a real
broker of its own.

The module starts a broker of its own (temporary home, free ports) whose SASL_SSL listener presents
a certificate from a CA the test makes itself. A service runs against it in production mode; wrong
credentials, an untrusted certificate and PLAINTEXT clients are refused; production refuses to
start without SASL_SSL.

The service gets a PostgreSQL of its own too, beside that broker, serving TLS with the same
certificate (production verifies it): a consumer records the last offset
applied per (topic, partition) in its schema, so a database shared with another broker would take
this broker's offsets for replays (and the other way round).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from services.registry import migrate_all
from shared.local.stack import (
    REPO_ROOT,
    StackConfig,
    make_local_tls,
    quiet,
    start_component,
    stop_component,
)
from shared.runtime.kafka import client_options
from shared.runtime.settings import KafkaSettings
from shared.runtime.topic_admin import create_topics
from tests.support import cloud_event, free_port, free_ports, port_open, running, unique
from tests.support.host import processes_mentioning, scratch_home

pytestmark = pytest.mark.integration

SERVICE_USER, TESTER = "profiles", "tester"


@pytest.fixture(scope="module")
async def secure() -> AsyncIterator[StackConfig]:
    """A broker with a SASL_SSL listener, SCRAM users and every topic, and a migrated PostgreSQL;
    both stopped at the end, with nothing left running."""
    home = await asyncio.to_thread(scratch_home, "mentornet-sasl-")
    tls = await asyncio.to_thread(make_local_tls, home / "tls")
    kafka, controller, sasl, pg = ports = free_ports(4)
    cfg = StackConfig(
        home=home,
        kafka_port=kafka,
        controller_port=controller,
        sasl_ssl_port=sasl,
        pg_port=pg,
        scram_users={
            SERVICE_USER: SecretStr(secrets.token_urlsafe(24)),
            TESTER: SecretStr(secrets.token_urlsafe(24)),
        },
        ssl_keystore=tls.keystore,
        ssl_cafile=tls.cafile,
        with_mailcatcher=False,
    )
    try:
        await asyncio.gather(
            start_component(cfg, "kafka", on_step=quiet),
            start_component(cfg, "postgres", on_step=quiet),
        )
        # provisioned through the secured listener itself, as an operator would
        await create_topics(kafka=cfg.kafka_settings(TESTER))
        await migrate_all(cfg.database_url)
        yield cfg
    finally:
        for name in ("kafka", "postgres"):
            stop_component(cfg, name, on_step=quiet)
        assert [p for p in ports if port_open(p)] == [], "something still listens"
        assert processes_mentioning(str(home)) == [], "a process of the secured stack is left"
        shutil.rmtree(home, ignore_errors=True)


def mentor(person: str) -> dict[str, Any]:
    return {
        "person_id": person,
        "program_id": "prog-1",
        "display_name": "Secure Mentor",
        "email": f"{person}@example.org",
        "languages": ["en"],
        "timezone": "Europe/London",
        "expertise": [{"topic": "compilers", "level": 5}],
        "capacity": 1,
    }


@contextmanager
def _client_errors() -> Iterator[list[str]]:
    """What aiokafka logs while connecting: the reason behind its generic bootstrap error."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("aiokafka")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


async def _refusal(kafka: KafkaSettings | dict[str, Any]) -> str:
    """Start a producer with these options; it must fail. Returns why, as aiokafka logged it."""
    options = client_options(kafka) if isinstance(kafka, KafkaSettings) else kafka
    producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
    with _client_errors() as reasons:
        try:
            await asyncio.wait_for(producer.start(), timeout=30)
        except KafkaError:
            return "\n".join(reasons)
        finally:
            await producer.stop()
    raise AssertionError(f"a client with {sorted(options)} connected; it should be refused")


async def test_a_service_in_production_mode_works_over_sasl_ssl(secure: StackConfig) -> None:
    service = secure.kafka_settings(SERVICE_USER)
    password = service.sasl_password.get_secret_value() if service.sasl_password else ""
    env = {
        "ENVIRONMENT": "production",
        "KAFKA_BOOTSTRAP_SERVERS": service.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": SERVICE_USER,
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": str(secure.ssl_cafile),
        "DATABASE_URL": secure.verified_database_url,  # TLS to PostgreSQL too
        "ALLOW_UNSIGNED_INGRESS": "true",  # this test's tenant does not sign
    }
    tenant = unique("secure")
    event = cloud_event("mentor-registered", tenant, mentor("p-1"))
    tester = client_options(secure.kafka_settings(TESTER))
    reader = AIOKafkaConsumer(
        "enrolment-updated", **tester, group_id=None, auto_offset_reset="earliest"
    )
    # /readyz answers 200 only once the broker answers the service over SASL_SSL.
    async with running(["profiles"], env) as procs:
        producer = AIOKafkaProducer(**tester, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                "mentor-registered", json.dumps(event).encode(), key=b"p-1"
            )
        finally:
            await producer.stop()
        await reader.start()
        try:
            published = await asyncio.wait_for(_first_of_tenant(reader, tenant), timeout=30)
        finally:
            await reader.stop()
        log = procs["profiles"].tail(10_000)
        db = await asyncpg.connect(secure.database_url)
        try:  # the service's own connections, seen by the server: all of them TLS
            links = await db.fetch(
                """SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                   WHERE a.application_name LIKE 'mentornet-profiles%'"""
            )
        finally:
            await db.close()
    assert links and all(link["ssl"] for link in links)
    body = json.loads(published)
    assert body["type"] == "enrolment-updated" and body["correlationid"] == event["id"]
    assert body["data"]["person_id"] == "p-1"
    assert password not in log, "the SASL password reached the service's log"


async def _first_of_tenant(reader: AIOKafkaConsumer, tenant: str) -> bytes:
    while True:
        record = await reader.getone()
        if record.value and json.loads(record.value).get("tenantid") == tenant:
            return bytes(record.value)


async def test_wrong_credentials_are_refused(secure: StackConfig) -> None:
    good = secure.kafka_settings(TESTER)
    wrong_password = good.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    unknown_user = good.model_copy(update={"sasl_username": "nobody"})
    for settings in (wrong_password, unknown_user):
        reason = await _refusal(settings)
        assert "SaslAuthenticationFailed" in reason and "invalid credentials" in reason, reason
    # the right password still works, so the refusals above were about the credentials
    producer = AIOKafkaProducer(**client_options(good))
    await producer.start()
    await producer.stop()


async def test_an_untrusted_certificate_is_refused(secure: StackConfig) -> None:
    """Without KAFKA_SSL_CAFILE the client trusts only the system CAs, not the broker's."""
    settings = secure.kafka_settings(TESTER).model_copy(update={"ssl_cafile": None})
    reason = await _refusal(settings)
    assert "CERTIFICATE_VERIFY_FAILED" in reason, reason


async def test_a_plaintext_client_cannot_use_the_sasl_ssl_port(secure: StackConfig) -> None:
    reason = await _refusal({"bootstrap_servers": secure.sasl_ssl_bootstrap_servers})
    assert "closed" in reason, reason  # the broker hangs up on bytes that are not TLS
    # TLS without SASL is refused as well: the listener insists on authentication.
    tls = client_options(secure.kafka_settings(TESTER))
    reason = await _refusal(
        {
            "bootstrap_servers": tls["bootstrap_servers"],
            "security_protocol": "SSL",
            "ssl_context": tls["ssl_context"],
        }
    )
    assert "closed" in reason, reason


@pytest.mark.parametrize(
    "security",
    [
        {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
        {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "profiles"},  # no password
    ],
    ids=["plaintext", "no-password"],
)
def test_production_refuses_to_start_without_sasl_ssl(
    secure: StackConfig, security: dict[str, str]
) -> None:
    result = _start_in_production({"KAFKA_BOOTSTRAP_SERVERS": secure.bootstrap_servers, **security})
    assert result.returncode != 0
    assert "ENVIRONMENT=production requires KAFKA_SECURITY_PROTOCOL=SASL_SSL" in result.stderr
    assert "Traceback" not in result.stderr  # a clear message, not a crash


def test_production_refuses_a_database_without_verified_tls_and_unsigned_ingress(
    secure: StackConfig,
) -> None:
    """Kafka secured, but PostgreSQL in plain text (or TLS unverified) and no signing key."""
    kafka = secure.kafka_settings(SERVICE_USER)
    secured = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": SERVICE_USER,
        "KAFKA_SASL_PASSWORD": kafka.sasl_password.get_secret_value()
        if kafka.sasl_password
        else "",
        "KAFKA_SSL_CAFILE": str(secure.ssl_cafile),
    }
    for url in (secure.database_url, secure.database_url + "?sslmode=require"):
        result = _start_in_production({**secured, "DATABASE_URL": url})
        assert result.returncode != 0
        assert "sslmode=verify-full" in result.stderr and "INGRESS_SIGNING_KEYS" in result.stderr
        assert "KAFKA_SECURITY_PROTOCOL" not in result.stderr  # Kafka is fine: not listed
        assert "Traceback" not in result.stderr


def _start_in_production(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start profiles with ENVIRONMENT=production and only `env` for Kafka and the database
    (nothing inherited); it is expected to refuse, so it does not run for long."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "services.profiles"],
        cwd=REPO_ROOT,
        env={**clean, "ENVIRONMENT": "production", "HTTP_PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
