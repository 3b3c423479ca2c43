-- Two-sided fit, waiting reasons and weights learned from outcomes (docs/matching.md).
ALTER TABLE mentors ADD COLUMN learning_interests text[] NOT NULL DEFAULT '{}';  -- topics, as typed
ALTER TABLE mentees ADD COLUMN offers text[] NOT NULL DEFAULT '{}',  -- topics, as typed
                    ADD COLUMN waiting_reason text;  -- why the last try found no mentor (mentee-waiting)

-- Each criterion's value when the pair was proposed: what the weights are learned from.
ALTER TABLE matches ADD COLUMN criteria jsonb;

-- The weights a program's outcomes taught, with what they were learned from (`learning: on`).
CREATE TABLE learned_weights (
    tenant_id   text NOT NULL,
    program_id  text NOT NULL,
    weights     jsonb NOT NULL,   -- in force once in_force: within the program's bounds
    learned     jsonb NOT NULL,   -- what the model said, before the bounds
    outcomes    int NOT NULL,     -- outcomes read
    in_force    boolean NOT NULL, -- the program's learning_min_outcomes were reached
    learned_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, program_id)
);

-- Each program's last learning run, even one that taught nothing (outcomes all of one kind):
-- the job runs again once the outcomes moved by a step or the settings changed (`config_at`).
-- `runs` numbers them: a run's `weights-learned` event id derives from it.
CREATE TABLE learning_runs (
    tenant_id   text NOT NULL,
    program_id  text NOT NULL,
    runs        int NOT NULL,          -- learning runs committed so far
    outcomes    int NOT NULL,          -- outcomes the last run read
    config_at   timestamptz,           -- the program's configuration it read (programs.updated_at)
    ran_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, program_id)
);
