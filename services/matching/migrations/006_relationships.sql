-- A relationship's life, from its confirmation to its end (docs/matching.md, "Lifecycle").
ALTER TABLE matches DROP CONSTRAINT IF EXISTS matches_status_check;
ALTER TABLE matches ADD CONSTRAINT matches_status_check CHECK (status IN
    ('proposed', 'confirmed', 'declined', 'expired', 'cancelled', 'completed', 'ended_early'));
ALTER TABLE matches
    ADD COLUMN confirmed_at    timestamptz,
    ADD COLUMN last_session_at timestamptz,
    ADD COLUMN checkins_done   int NOT NULL DEFAULT 0,  -- check-ins asked, in checkin_days order
    ADD COLUMN stalled_at      timestamptz,  -- the current quiet spell was reported then
    ADD COLUMN due_at          timestamptz,  -- when the relationship job looks at it next
    ADD COLUMN ended_by        text,         -- who ended it (a person id), when someone did
    ADD COLUMN ended_by_role   text CHECK (ended_by_role IN ('mentor', 'mentee', 'program')),
    ADD COLUMN end_reason      text CHECK (end_reason IN ('goals_reached', 'no_time', 'not_a_fit', 'other')),
    ADD COLUMN end_note        text;         -- free text for coordinators: erased with its author
UPDATE matches SET confirmed_at = coalesce(greatest(mentee_accepted_at, mentor_accepted_at), proposed_at),
                   due_at = now()
    WHERE status = 'confirmed';
CREATE INDEX relationships_due ON matches (due_at) WHERE status = 'confirmed';

-- A mentee whose relationship completed, or who ended it for lack of time, is done: not on the
-- waitlist any more.
ALTER TABLE mentees DROP CONSTRAINT IF EXISTS mentees_status_check;
ALTER TABLE mentees ADD CONSTRAINT mentees_status_check
    CHECK (status IN ('waiting', 'proposed', 'matched', 'done'));

-- Mentors' pauses (mentor-availability, or a `no_time` ending): the latest event wins. A paused
-- mentor is left out of the pool; 'infinity' means until they say they are available.
CREATE TABLE availability (
    tenant_id    text NOT NULL,
    program_id   text NOT NULL,
    person_id    text NOT NULL,
    paused_until timestamptz,  -- NULL: available
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, program_id, person_id)
);
CREATE INDEX availability_resumes ON availability (paused_until) WHERE paused_until IS NOT NULL;

-- Check-in and closing feedback, one row per person, kind and check-in (0 for closing, or for a
-- check-in given before any was asked). The comment is erased with its author.
CREATE TABLE feedback (
    tenant_id      text NOT NULL,
    match_id       text NOT NULL,
    person_id      text NOT NULL,
    role           text NOT NULL CHECK (role IN ('mentor', 'mentee')),
    kind           text NOT NULL CHECK (kind IN ('checkin', 'closing')),
    checkin        int NOT NULL,
    rating         int NOT NULL CHECK (rating BETWEEN 1 AND 5),
    goals          jsonb,
    learned        boolean NOT NULL,
    learned_topics jsonb,
    comment        text,
    given_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, match_id, person_id, kind, checkin)
);
