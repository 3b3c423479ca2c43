"""profiles' HTTP ingress without infrastructure: its settings, the per-tenant rate it is held
to, and its answer when Kafka or the database is away (tests/integration/test_http_ingress.py
runs it on the real broker and database)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.profiles.ingress import EventsEndpoint
from services.profiles.settings import MAX_BATCH, ProfilesSettings
from shared.runtime.rate_limit import TokenBucket

pytestmark = pytest.mark.unit


def test_two_tenants_may_not_share_a_token() -> None:
    with pytest.raises(ValidationError, match="same token"):
        ProfilesSettings(http_ingress_tokens={"acme": "t" * 40, "globex": "t" * 40})


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="empty"):
        ProfilesSettings(http_ingress_tokens={"acme": ""})


def test_the_burst_holds_a_full_batch() -> None:
    with pytest.raises(ValidationError):
        ProfilesSettings(http_ingress_burst=MAX_BATCH - 1)


def test_production_refuses_short_tokens() -> None:
    short = ProfilesSettings(http_ingress_tokens={"acme": "x" * 31})
    long = ProfilesSettings(http_ingress_tokens={"acme": "x" * 32})
    assert any("HTTP_INGRESS_TOKENS" in p for p in short.production_problems())
    assert not any("HTTP_INGRESS_TOKENS" in p for p in long.production_problems())


def test_a_bucket_gives_a_batch_all_its_tokens_or_none() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=100, burst=1000, clock=lambda: now[0])
    assert bucket.try_acquire(0.0, tokens=1000) == 0.0
    assert bucket.try_acquire(0.0, tokens=1) is None  # the burst is spent
    assert bucket.retry_in(500) == pytest.approx(5.0)  # 500 tokens at 100 a second
    now[0] = 5.0
    assert bucket.try_acquire(0.0, tokens=500) == 0.0
    assert bucket.try_acquire(0.0, tokens=1) is None


@pytest.mark.parametrize("start", [0.0, 32190.632693748, 1_000_003.25, 31_536_000.7])
def test_a_fresh_bucket_gives_a_full_burst_whatever_the_clock_reads(start: float) -> None:
    """Seen in CI: at monotonic() = 32190.632693748, `now + 1000 - now - 1000` is 3.6e-12 in
    floats, and a full batch to a fresh bucket was refused ("retry in 0 s")."""
    now = [start]
    bucket = TokenBucket(rate=1, burst=1000, clock=lambda: now[0])
    assert bucket.try_acquire(0.0, tokens=1000) == 0.0
    assert bucket.try_acquire(0.0, tokens=1) is None
    now[0] += 1.0
    assert bucket.try_acquire(0.0, tokens=1) == 0.0  # one a second again


class _Down:
    """A pool or producer whose dependency does not answer."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def acquire(self) -> Any:
        raise self.error

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class _Pool:
    """A database that has seen nothing yet (and remembers nothing)."""

    def acquire(self) -> Any:
        pool = self

        class _Conn:
            async def __aenter__(self) -> Any:
                return pool

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Conn()

    async def fetch(self, *args: Any) -> list[Any]:
        return []

    async def execute(self, *args: Any) -> None:
        return None


async def _post(endpoint: EventsEndpoint, body: bytes) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/events",
        "headers": [
            (b"authorization", b"Bearer " + TOKEN.encode()),
            (b"content-type", b"application/cloudevents+json"),
        ],
    }
    await endpoint(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


TOKEN = "t" * 32
EVENT = json.dumps(
    {
        "specversion": "1.0",
        "id": "off-1",
        "source": "hr/workday",
        "type": "person-offboarded",
        "time": "2026-12-06T09:00:00Z",
        "tenantid": "acme",
        "data": {"person_id": "p-1"},
    }
).encode()


@pytest.mark.parametrize(
    ("pool", "producer"),
    [
        (_Down(OSError("connection refused")), None),
        (_Pool(), _Down(KafkaConnectionError("broker away"))),
    ],
)
async def test_kafka_or_the_database_away_is_a_503_to_retry(pool: Any, producer: Any) -> None:
    runtime = SimpleNamespace(registry=CollectorRegistry(), pool=pool, producer=producer)
    settings = ProfilesSettings(http_ingress_tokens={"acme": TOKEN})
    status, body = await _post(EventsEndpoint(runtime, settings), EVENT)  # type: ignore[arg-type]
    assert status == 503
    assert body["error"]["code"] == "unavailable"
    assert "send the same request again" in body["error"]["reason"]
