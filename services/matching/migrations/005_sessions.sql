-- Sessions counted in pair_history and mentor_ratings: a session reported twice (under two
-- event ids) counts once.
CREATE TABLE sessions (
    tenant_id   text NOT NULL,
    match_id    text NOT NULL,
    session_id  text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, match_id, session_id)
);
