"""What tests that talk to the real broker, database and services use.

The pieces the benchmarks need too live in shared/local (processes, Kafka clients, probes, the
SMTP sink) and are re-exported here; what only tests need lives beside this file:

- `events`: CloudEvents written by hand, and a filter by tenant;
- `database`: pools as fixtures (`pool_fixture`), waiting for an outbox to drain;
- `host`: homes for stacks of a test's own, and which processes still run;
- `fault` and `world`: the fault suites' tools and their seeded world with its oracle.
"""

from shared.local.kafka import (
    TopicReader,
    commit_end_offsets,
    end_offsets,
    fresh_group,
    publish_raw,
    topic_partitions,
    unique,
)
from shared.local.probes import free_port, free_ports, http_status, port_open, wait_for
from shared.local.processes import ServiceProcess, Services, running
from shared.local.sinks import SmtpSink
from tests.support.database import outbox_drained, pool_fixture
from tests.support.events import cloud_event, enrolment_updated, ingress, mentor_data, of_tenant

__all__ = [
    "ServiceProcess",
    "Services",
    "SmtpSink",
    "TopicReader",
    "cloud_event",
    "commit_end_offsets",
    "end_offsets",
    "enrolment_updated",
    "free_port",
    "free_ports",
    "fresh_group",
    "http_status",
    "ingress",
    "mentor_data",
    "of_tenant",
    "outbox_drained",
    "pool_fixture",
    "port_open",
    "publish_raw",
    "running",
    "topic_partitions",
    "unique",
    "wait_for",
]
