"""The registry of every Kafka topic: name, key, partitions, cleanup policy, who writes and reads.

Services subscribe to what this registry says they read (`read_by`); docs/contract.md's topic
table is checked against it by a test.

Partition counts let matching and notifications scale out to that many replicas per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producer: str  # who publishes, as docs/contract.md writes it: "mentoring apps, notifications"
    consumers: tuple[str, ...]
    description: str
    partitions: int = 6
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = 30 * DAY_MS
    ingress: bool = False
    config: dict[str, str] = field(default_factory=dict)

    @property
    def publishers(self) -> tuple[str, ...]:
        """Each publisher `producer` names (apps and a service may publish the same event)."""
        return tuple(self.producer.split(", "))

    def kafka_config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.config,
        }


HR = "HR systems"
APPS = "mentoring apps"
APPS_AND_ANSWER_PAGE = f"{APPS}, notifications"  # people also answer from emails' links
PERSON_KEY = "person_id (or tenantid:person_id)"
PROGRAM_KEY = "tenantid:program_id"

_ALL = [
    Topic(
        "mentor-registered",
        PERSON_KEY,
        HR,
        ("profiles",),
        "A person enrolled as mentor.",
        ingress=True,
    ),
    Topic(
        "mentee-registered",
        PERSON_KEY,
        HR,
        ("profiles",),
        "A person enrolled as mentee.",
        ingress=True,
    ),
    Topic(
        "person-offboarded",
        PERSON_KEY,
        HR,
        ("profiles",),
        "A person left: erase and end.",
        ingress=True,
    ),
    Topic(
        "match-responded",
        "match_id",
        APPS_AND_ANSWER_PAGE,
        ("matching", "notifications"),
        "Accept or decline a proposal.",
        ingress=True,
    ),
    Topic(
        "session-completed",
        "match_id",
        APPS,
        ("matching", "notifications"),
        "A session happened.",
        ingress=True,
    ),
    Topic(
        "relationship-ended",
        "match_id",
        APPS,
        ("matching",),
        "End a relationship early, or with its goals reached.",
        ingress=True,
    ),
    Topic(
        "feedback-given",
        "match_id",
        APPS_AND_ANSWER_PAGE,
        ("matching",),
        "Check-in or closing feedback from one side.",
        ingress=True,
    ),
    Topic(
        "mentor-availability",
        PERSON_KEY,
        APPS,
        ("matching",),
        "A mentor pauses or comes back.",
        ingress=True,
    ),
    Topic(
        "program-configured",
        "program_id",
        "program managers",
        ("matching",),
        "Program settings.",
        ingress=True,
    ),
    Topic(
        "cohort-match-requested",
        "program_id",
        "program managers",
        ("matching",),
        "Match a cohort now.",
        ingress=True,
    ),
    Topic(
        "enrolment-updated",
        PROGRAM_KEY,
        "profiles",
        ("matching", "notifications"),
        "Canonical enrolment.",
    ),
    Topic(
        "enrolment-ended",
        PROGRAM_KEY,
        "profiles",
        ("matching", "notifications"),
        "Enrolment ended; erase.",
    ),
    Topic(
        "match-proposed",
        "match_id",
        "matching",
        ("notifications",),
        "A scored, explained proposal.",
    ),
    Topic("match-confirmed", "match_id", "matching", ("notifications",), "Both sides accepted."),
    Topic(
        "match-ended",
        "match_id",
        "matching",
        ("notifications",),
        "Declined, expired, cancelled, completed or ended early.",
    ),
    Topic(
        "relationship-stalled",
        "match_id",
        "matching",
        ("notifications",),
        "No session for stall_after_days.",
    ),
    Topic(
        "feedback-requested",
        "match_id",
        "matching",
        ("notifications",),
        "Check-in or closing feedback asked of one person.",
    ),
    Topic(
        "mentee-waiting",
        PROGRAM_KEY,
        "matching",
        (),
        "A waiting mentee got no proposal, and why.",
    ),
    Topic(
        "weights-learned",
        PROGRAM_KEY,
        "matching",
        (),
        "A program's weights learned from its outcomes.",
    ),
    Topic(
        "notification-delivered",
        "recipient_id",
        "notifications",
        (),
        "A notification was delivered.",
    ),
    Topic(
        "notification-failed",
        "recipient_id",
        "notifications",
        (),
        "A notification failed for good.",
    ),
]
# The services, in the order the registry first names them as readers (one dead-letter topic each).
SERVICES: tuple[str, ...] = tuple(dict.fromkeys(c for t in _ALL for c in t.consumers))
_DLQ = [
    Topic(
        f"dlq.{service}",
        "original key",
        service,
        (),
        f"Records {service} rejected: original bytes and headers, reason in headers.",
        partitions=1,
        retention_ms=90 * DAY_MS,
    )
    for service in SERVICES
]

TOPICS: dict[str, Topic] = {t.name: t for t in _ALL + _DLQ}
INGRESS_TOPICS = tuple(t.name for t in _ALL if t.ingress)


def read_by(service: str) -> tuple[str, ...]:
    """The topics `service` subscribes to: its subscriptions are read from here."""
    return tuple(t.name for t in _ALL if service in t.consumers)


def published_by(service: str) -> tuple[str, ...]:
    """The topics `service` publishes (its dead-letter topic aside)."""
    return tuple(t.name for t in _ALL if service in t.publishers)


def dead_letter_topic(service: str) -> str:
    return TOPICS[f"dlq.{service}"].name


def program_key(tenant_id: str, program_id: str) -> str:
    """Key of canonical events: one program always lands on one partition (matching owns it)."""
    return f"{tenant_id}:{program_id}"
