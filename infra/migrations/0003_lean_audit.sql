-- A leaner audit row (issue 18): 406 -> under 200 bytes per row, table + indexes.
--
-- * Board ids and period keys move to two small dictionaries (audit_boards, audit_periods);
--   a row keeps a 4-byte board id and a 2-byte period id instead of repeating the text.
-- * The operator is a smallint (0 best, 1 set, 2 incr, 3 decr; 4 participant_removed and
--   5 match_voided for the rows of moderations, see docs/moderation.md).
-- * The event id is 16 raw bytes when it is a canonical UUID (event_uuid), its text otherwise
--   (event_text); exactly one of the two is set.
-- * match_id is stored only when it differs from the event id (the common case is equal).
-- * recorded_at (the writer's wall clock, read by nothing) is gone.
-- * One unique btree, chosen by the queries that run: replay reads one board in
--   (source_partition, source_offset, entry_index) order, and that same key makes a
--   redelivered entry conflict (a unique key of a partitioned table must hold the partition
--   key, hence occurred_at last). A BRIN index on occurred_at serves `replay --from-time` and
--   time-ranged reads inside a month (rows arrive roughly in time order).
-- * The previous participant index served no query of the code; it is dropped.
--
-- The readable shape stays: `score_audit` is now a view with the previous columns, so ad-hoc
-- SQL and reports keep working. Existing rows are moved into the new table here.

CREATE TABLE audit_boards (
    id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);
COMMENT ON TABLE audit_boards IS 'Board id dictionary of audit_entries (board_id -> name).';

CREATE TABLE audit_periods (
    id     smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period text NOT NULL UNIQUE
);
COMMENT ON TABLE audit_periods IS
    'Period key dictionary of audit_entries (shared by all boards: all, 2026-11, 2026-W48, ...).';

-- Columns ordered by alignment (8, 4, 2 bytes, then variable length) so that no byte is padding.
CREATE TABLE audit_entries (
    version          bigint      NOT NULL,
    submitted_score  bigint      NOT NULL,
    new_score        bigint      NOT NULL,
    old_score        bigint,
    source_offset    bigint      NOT NULL,
    occurred_at      timestamptz NOT NULL,
    claimed_at       timestamptz,
    board_id         integer     NOT NULL,
    new_rank         integer     NOT NULL,
    old_rank         integer,
    period_id        smallint    NOT NULL,
    source_partition smallint    NOT NULL,
    entry_index      smallint    NOT NULL,
    operator         smallint    NOT NULL CHECK (operator BETWEEN 0 AND 5),
    participant_id   text        NOT NULL,
    event_uuid       uuid,
    event_text       text,
    match_id         text,
    CHECK ((event_uuid IS NULL) <> (event_text IS NULL)),
    CONSTRAINT audit_entries_source_key
        UNIQUE (board_id, source_partition, source_offset, entry_index, occurred_at)
) PARTITION BY RANGE (occurred_at);

COMMENT ON COLUMN audit_entries.operator IS
    '0 best, 1 set, 2 incr, 3 decr, 4 participant_removed, 5 match_voided';
COMMENT ON COLUMN audit_entries.match_id IS 'null when the match id equals the event id';
COMMENT ON COLUMN audit_entries.claimed_at IS
    'The producer''s claimed event time when it differs from occurred_at (the ranking time); null otherwise.';

-- The one rule for the stored event id: a canonical UUID (lower-case, hyphenated, the text
-- PostgreSQL prints back) is kept as 16 bytes, anything else as text; so every id reads back as
-- it was written. Used by this migration and by the writer (sinks/audit.py).
CREATE FUNCTION audit_event_uuid(event_id text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN event_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        THEN event_id::uuid
    END;
$$;

CREATE INDEX audit_entries_occurred_brin ON audit_entries USING brin (occurred_at);

CREATE TABLE audit_entries_default PARTITION OF audit_entries DEFAULT;

CREATE OR REPLACE FUNCTION ensure_audit_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT ensure_monthly_partitions('audit_entries', 'occurred_at', from_ts, to_ts);
$$;

-- ---------------------------------------------------------------------------------------
-- Move the existing rows.
INSERT INTO audit_boards (name)
SELECT DISTINCT leaderboard_id FROM score_audit ORDER BY 1;
INSERT INTO audit_periods (period)
SELECT DISTINCT period FROM score_audit ORDER BY 1;

SELECT ensure_audit_partitions(min(occurred_at), max(occurred_at)) FROM score_audit;

INSERT INTO audit_entries (
    version, submitted_score, new_score, old_score, source_offset, occurred_at, claimed_at,
    board_id, new_rank, old_rank, period_id, source_partition, entry_index, operator,
    participant_id, event_uuid, event_text, match_id
)
SELECT s.version, s.submitted_score, s.new_score, s.old_score, s.source_offset, s.occurred_at,
       s.claimed_at, b.id, s.new_rank, s.old_rank, p.id, s.source_partition, s.entry_index,
       array_position(ARRAY['best', 'set', 'incr', 'decr', 'participant_removed', 'match_voided'], s.operator) - 1,
       s.participant_id, audit_event_uuid(s.event_id),
       CASE WHEN audit_event_uuid(s.event_id) IS NULL THEN s.event_id END,
       NULLIF(s.match_id, s.event_id)
FROM score_audit s
JOIN audit_boards b ON b.name = s.leaderboard_id
JOIN audit_periods p ON p.period = s.period
ORDER BY s.occurred_at, s.source_partition, s.source_offset, s.entry_index
ON CONFLICT DO NOTHING;

DROP TABLE score_audit;

-- ---------------------------------------------------------------------------------------
-- The readable audit, in the previous shape (one row per applied entry).
CREATE VIEW score_audit AS
SELECT b.name AS leaderboard_id,
       p.period,
       a.version,
       a.participant_id,
       (ARRAY['best', 'set', 'incr', 'decr', 'participant_removed', 'match_voided'])[a.operator + 1] AS operator,
       a.submitted_score,
       a.old_score,
       a.new_score,
       a.old_rank,
       a.new_rank,
       coalesce(a.event_uuid::text, a.event_text) AS event_id,
       coalesce(a.match_id, a.event_uuid::text, a.event_text) AS match_id,
       a.entry_index::integer AS entry_index,
       a.source_partition::integer AS source_partition,
       a.source_offset,
       a.occurred_at,
       a.claimed_at
FROM audit_entries a
JOIN audit_boards b ON b.id = a.board_id
JOIN audit_periods p ON p.id = a.period_id;

COMMENT ON VIEW score_audit IS
    'One row per applied score entry, readable (ids resolved); stored in audit_entries.';
