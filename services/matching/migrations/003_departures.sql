-- Enrolments that ended (the person left): a registration older than this is ignored, since
-- enrolment-updated and enrolment-ended are different topics and may be read in either order.
CREATE TABLE departures (
    tenant_id   text NOT NULL,
    program_id  text NOT NULL,
    person_id   text NOT NULL,
    ended_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, program_id, person_id)
);
