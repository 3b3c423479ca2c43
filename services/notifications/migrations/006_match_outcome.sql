-- How a match ended (match-ended's outcome; the first one read is kept), so a closing feedback
-- request read after the end can congratulate a relationship that completed.
ALTER TABLE matches ADD COLUMN IF NOT EXISTS outcome text;
