-- The database guards capacities whatever a statement does: a mentor's load never goes below 0,
-- and is never raised above their capacity. Lowering a capacity below the load stays allowed (a
-- re-registration with fewer places: the relationships in progress go on); only an increase of
-- the load that ends above capacity is refused, as a check violation of `mentor_within_capacity`.
ALTER TABLE mentors ADD CONSTRAINT mentor_load_not_negative CHECK (load >= 0);

CREATE FUNCTION mentor_within_capacity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.load > OLD.load AND NEW.load > NEW.capacity THEN
        RAISE EXCEPTION 'mentor % of program % has no place left (load % above capacity %)',
                NEW.person_id, NEW.program_id, NEW.load, NEW.capacity
            USING ERRCODE = 'check_violation', CONSTRAINT = 'mentor_within_capacity',
                  TABLE = 'mentors';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER mentor_within_capacity BEFORE UPDATE OF load ON mentors
    FOR EACH ROW EXECUTE FUNCTION mentor_within_capacity();
