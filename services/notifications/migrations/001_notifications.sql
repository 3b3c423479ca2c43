-- Contact data per (tenant, person): the latest registration wins. Erasure blanks the row in
-- place and keeps erased_at, so a registration older than the erasure cannot bring data back.
CREATE TABLE contacts (
    tenant_id      text NOT NULL,
    person_id      text NOT NULL,
    role           text,
    display_name   text,
    email          text,
    languages      text[] NOT NULL DEFAULT '{}',
    timezone       text,
    registered_at  timestamptz,
    erased_at      timestamptz,
    PRIMARY KEY (tenant_id, person_id)
);

-- Who is mentor and mentee of a match (ids only), and how far it got.
CREATE TABLE matches (
    tenant_id   text NOT NULL,
    match_id    text NOT NULL,
    program_id  text NOT NULL,
    mentee_id   text NOT NULL,
    mentor_id   text NOT NULL,
    expires_at  timestamptz,
    state       text NOT NULL CHECK (state IN ('proposed', 'confirmed', 'ended')),
    PRIMARY KEY (tenant_id, match_id)
);

-- Who answered a proposal: they get no reminder.
CREATE TABLE responses (
    tenant_id  text NOT NULL,
    match_id   text NOT NULL,
    person_id  text NOT NULL,
    PRIMARY KEY (tenant_id, match_id, person_id)
);

-- How a tenant is reached; a tenant without rows gets email through the default relay.
CREATE TABLE tenant_channels (
    tenant_id  text NOT NULL,
    channel    text NOT NULL CHECK (channel IN ('email', 'webhook')),
    endpoint   text,
    secret     text,
    PRIMARY KEY (tenant_id, channel)
);

-- A person's "do not send me this category".
CREATE TABLE opt_outs (
    tenant_id  text NOT NULL,
    person_id  text NOT NULL,
    category   text NOT NULL,
    PRIMARY KEY (tenant_id, person_id, category)
);

-- One row per notification to send. The id is uuid5(tenant, source event, recipient, channel,
-- kind), so a redelivered event inserts nothing new. No personal data: names and addresses are
-- read from contacts when the row is sent, so erasing a contact erases them everywhere.
CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    source_event_id  text NOT NULL,
    recipient_id     text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('email', 'webhook')),
    kind             text NOT NULL,
    category         text NOT NULL,
    match_id         text,
    partner_id       text,
    context          jsonb NOT NULL,
    correlation_id   text,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    locked_until     timestamptz,
    give_up_at       timestamptz NOT NULL,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (tenant_id, source_event_id, recipient_id, channel, kind)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_pending_recipient ON deliveries (tenant_id, recipient_id)
    WHERE state = 'pending';
CREATE INDEX deliveries_pending_match ON deliveries (tenant_id, match_id)
    WHERE state = 'pending' AND match_id IS NOT NULL;
