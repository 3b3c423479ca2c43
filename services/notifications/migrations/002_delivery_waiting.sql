-- Deliveries waiting for a contact are flagged, so the contact's arrival wakes exactly them
-- (not rows scheduled for later on purpose, like reminders and retries).
-- IF NOT EXISTS: an early copy of 001 already carried this column on some databases.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS waiting boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries (tenant_id)
    WHERE state = 'pending' AND waiting;
