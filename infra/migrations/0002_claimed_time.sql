-- Boards now rank by the broker's append time by default (time_source = log): occurred_at is
-- the ranking time of the entry, and the producer's claimed time, when it differs, is kept
-- beside it as information.
ALTER TABLE score_audit ADD COLUMN IF NOT EXISTS claimed_at timestamptz;
COMMENT ON COLUMN score_audit.claimed_at IS
    'The producer''s claimed event time when it differs from occurred_at (the ranking time); null otherwise.';
