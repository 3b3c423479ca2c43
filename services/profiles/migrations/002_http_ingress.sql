-- Events accepted on POST /events and acknowledged by Kafka: a repeated one is answered as a
-- duplicate and not published again. Purged after RETENTION_DAYS, like the inbox.
CREATE TABLE http_ingress (
    tenant_id    text NOT NULL,
    source       text NOT NULL,
    event_id     text NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source, event_id)
);
CREATE INDEX http_ingress_accepted_at ON http_ingress (accepted_at);
