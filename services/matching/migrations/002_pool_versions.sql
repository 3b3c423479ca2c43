-- Bumped by every change to a program's pool that a replica's in-memory copy cannot see itself
-- (mentor joins, leaves or changes, a rating, a slot freed), so replicas know when to reload.
CREATE TABLE pool_versions (
    tenant_id   text NOT NULL,
    program_id  text NOT NULL,
    version     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, program_id)
);
