-- What a proposal email and the answer page show of the other person (expertise or goals, as
-- enrolment-updated gives them); blanked with the rest of the contact on erasure.
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS expertise jsonb;
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS goals jsonb;
-- The proposal's explanation (criterion, contribution, reason, facts), for the answer page;
-- nulled when either person is erased.
ALTER TABLE matches ADD COLUMN IF NOT EXISTS explanation jsonb;
-- How they answered ('accepted', 'declined'), from the app's event or the answer page.
ALTER TABLE responses ADD COLUMN IF NOT EXISTS decision text;

-- Answers given through signed links: one per (match, person, action), so a link works once.
-- The event it became is in the outbox, written in the same transaction.
CREATE TABLE IF NOT EXISTS answers (
    tenant_id    text NOT NULL,
    match_id     text NOT NULL,
    person_id    text NOT NULL,
    action       text NOT NULL,
    answer       text NOT NULL,
    event_id     text NOT NULL,
    answered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, match_id, person_id, action)
);
CREATE INDEX IF NOT EXISTS answers_answered_at ON answers (answered_at);
