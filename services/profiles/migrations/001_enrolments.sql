-- One row per (tenant, program, person): the latest registration wins (event time, then id).
CREATE TABLE enrolments (
    tenant_id     text NOT NULL,
    program_id    text NOT NULL,
    person_id     text NOT NULL,
    role          text NOT NULL CHECK (role IN ('mentor', 'mentee')),
    display_name  text NOT NULL,
    email         text NOT NULL,
    languages     text[] NOT NULL,
    timezone      text NOT NULL,
    department    text,
    seniority     int,
    manager_id    text,
    expertise     jsonb NOT NULL DEFAULT '[]',
    goals         jsonb NOT NULL DEFAULT '[]',
    capacity      int NOT NULL DEFAULT 0,
    event_time    timestamptz NOT NULL,
    event_id      text NOT NULL,
    PRIMARY KEY (tenant_id, person_id, program_id)
);

-- People who left: no personal data, only when (registrations older than this are ignored).
CREATE TABLE offboardings (
    tenant_id      text NOT NULL,
    person_id      text NOT NULL,
    offboarded_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, person_id)
);
