-- Inbox: one row per event this service has handled, written in the same transaction as the
-- change it caused, so a redelivered or republished event changes nothing.
CREATE TABLE inbox (
    tenant_id    text NOT NULL,
    source       text NOT NULL,
    event_id     text NOT NULL,
    handled_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source, event_id)
);

-- Outbox: events to publish, written in the same transaction as the state change and relayed
-- to Kafka afterwards (no dual write).
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    key         bytea,
    value       bytea NOT NULL,
    headers     bytea NOT NULL,  -- JSON [[name, base64 value], ...], as relayed to Kafka
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Last offset applied per partition, committed with the batch: a record replayed after a crash
-- (offset not yet committed to Kafka) is recognised and skipped, valid or not.
CREATE TABLE consumed_offsets (
    topic       text NOT NULL,
    partition   int  NOT NULL,
    "offset"    bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
