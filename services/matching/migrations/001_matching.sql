-- Program settings from `program-configured`; absent rows mean the defaults.
CREATE TABLE programs (
    tenant_id   text NOT NULL,
    program_id  text NOT NULL,
    config      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, program_id)
);

-- The pool: one row per enrolment, no names or emails (matching never needs them).
CREATE TABLE mentors (
    tenant_id     text NOT NULL,
    program_id    text NOT NULL,
    person_id     text NOT NULL,
    languages     text[] NOT NULL,
    timezone      text NOT NULL,
    department    text,
    seniority     int,
    manager_id    text,
    expertise     jsonb NOT NULL,
    capacity      int NOT NULL,
    load          int NOT NULL DEFAULT 0,  -- open proposals + confirmed matches
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, program_id, person_id)
);

CREATE TABLE mentees (
    tenant_id     text NOT NULL,
    program_id    text NOT NULL,
    person_id     text NOT NULL,
    languages     text[] NOT NULL,
    timezone      text NOT NULL,
    department    text,
    seniority     int,
    manager_id    text,
    goals         jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'proposed', 'matched')),
    waiting_since timestamptz NOT NULL DEFAULT now(),
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, program_id, person_id)
);
CREATE INDEX mentees_waiting ON mentees (tenant_id, program_id, waiting_since) WHERE status = 'waiting';

CREATE TABLE matches (
    match_id           text PRIMARY KEY,
    tenant_id          text NOT NULL,
    program_id         text NOT NULL,
    mentee_id          text NOT NULL,
    mentor_id          text NOT NULL,
    status             text NOT NULL CHECK (status IN ('proposed', 'confirmed', 'declined', 'expired', 'cancelled')),
    score              double precision NOT NULL,
    explanation        jsonb NOT NULL,
    proposed_at        timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    mentee_accepted_at timestamptz,
    mentor_accepted_at timestamptz,
    closed_at          timestamptz
);
-- A mentee has at most one open proposal, enforced by the database itself.
CREATE UNIQUE INDEX one_open_proposal_per_mentee ON matches (tenant_id, program_id, mentee_id)
    WHERE status = 'proposed';
CREATE INDEX matches_open_by_expiry ON matches (expires_at) WHERE status = 'proposed';
CREATE INDEX matches_by_pair ON matches (tenant_id, program_id, mentee_id, mentor_id);

-- What mentees said of their mentors: reputation is tenant-wide, shrunk towards a prior.
CREATE TABLE mentor_ratings (
    tenant_id    text NOT NULL,
    mentor_id    text NOT NULL,
    rating_sum   int NOT NULL DEFAULT 0,
    rating_count int NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, mentor_id)
);

-- Sessions per relationship, for history and analytics.
CREATE TABLE pair_history (
    match_id          text PRIMARY KEY,
    sessions          int NOT NULL DEFAULT 0,
    minutes           int NOT NULL DEFAULT 0,
    mentor_rating_sum int NOT NULL DEFAULT 0,
    mentee_rating_sum int NOT NULL DEFAULT 0,
    ratings           int NOT NULL DEFAULT 0
);
