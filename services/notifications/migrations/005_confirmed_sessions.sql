-- Whether a match was ever confirmed: its state moves on to 'ended' afterwards, and feedback
-- requests (which name the partner) are for sessions of confirmed matches only.
ALTER TABLE matches ADD COLUMN IF NOT EXISTS confirmed boolean NOT NULL DEFAULT false;
UPDATE matches SET confirmed = true WHERE state = 'confirmed' AND NOT confirmed;

-- One row per completed session (tenant, match, session id): the first session-completed event
-- for it is the one that asks for feedback, so another event for the same session adds nothing.
-- state: 'planned' (feedback requests written), 'pending' (the match was still proposed: held
-- until match-confirmed releases it), 'dropped' (the match ended without being confirmed).
-- What the feedback requests need is kept here, so a release can plan them later.
CREATE TABLE IF NOT EXISTS feedback_sessions (
    tenant_id         text NOT NULL,
    match_id          text NOT NULL,
    session_id        text NOT NULL,
    event_id          text NOT NULL,
    state             text NOT NULL CHECK (state IN ('planned', 'pending', 'dropped')),
    duration_minutes  int NOT NULL,
    correlation_id    text NOT NULL,
    traceparent       text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, match_id, session_id)
);
CREATE INDEX IF NOT EXISTS feedback_sessions_received ON feedback_sessions (received_at);
