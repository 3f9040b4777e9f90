-- PostgreSQL sinks: leaderboard registry, partitioned score audit, period-end snapshots.
-- Applied once by `leaderboard db migrate` (sinks/migrate.py), inside one transaction.

-- ---------------------------------------------------------------------------------------
-- Registry of boards (from the configuration topic; the latest configured_at wins).
CREATE TABLE leaderboards (
    id            text PRIMARY KEY,
    sort_order    text        NOT NULL CHECK (sort_order IN ('desc', 'asc')),
    operator      text        NOT NULL CHECK (operator IN ('best', 'set', 'incr', 'decr')),
    reset_period  text        NOT NULL CHECK (reset_period IN ('none', 'daily', 'weekly', 'monthly')),
    starts_at     timestamptz,
    ends_at       timestamptz,
    watch_top_n   integer     NOT NULL DEFAULT 0,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status        text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    closed_at     timestamptz,
    configured_at timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------
-- Audit history: one row per applied score entry (one RankChange of the rank-changes topic).
-- RANGE partitions by month of event time; a unique key on a partitioned table must include
-- the partition key, hence (leaderboard_id, version, occurred_at): a redelivered change has
-- the same version and event time, so it conflicts and is skipped.
CREATE TABLE score_audit (
    leaderboard_id   text        NOT NULL,
    period           text        NOT NULL,
    version          bigint      NOT NULL,
    participant_id   text        NOT NULL,
    operator         text        NOT NULL,
    submitted_score  bigint      NOT NULL,
    old_score        bigint,
    new_score        bigint      NOT NULL,
    old_rank         integer,
    new_rank         integer     NOT NULL,
    event_id         text        NOT NULL,
    match_id         text        NOT NULL,
    entry_index      integer     NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT score_audit_version_key UNIQUE (leaderboard_id, version, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX score_audit_replay_idx
    ON score_audit (leaderboard_id, source_partition, source_offset, entry_index);
CREATE INDEX score_audit_participant_idx ON score_audit (participant_id);

-- Safety net only: writers create the month's partition before they insert.
CREATE TABLE score_audit_default PARTITION OF score_audit DEFAULT;

-- ---------------------------------------------------------------------------------------
-- Final standings of closed periods, partitioned by month of the period's start.
CREATE TABLE period_standings (
    leaderboard_id text        NOT NULL,
    period         text        NOT NULL,
    period_start   timestamptz NOT NULL,
    rank           integer     NOT NULL,
    participant_id text        NOT NULL,
    score          bigint      NOT NULL,
    finalized_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (leaderboard_id, period, rank, period_start)
) PARTITION BY RANGE (period_start);

CREATE INDEX period_standings_participant_idx
    ON period_standings (participant_id, period_start DESC);

CREATE TABLE period_standings_default PARTITION OF period_standings DEFAULT;

-- One row per closed (board, period): written in the same transaction as its standings.
CREATE TABLE closed_periods (
    leaderboard_id    text        NOT NULL,
    period            text        NOT NULL,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    participant_count integer     NOT NULL,
    checksum          text        NOT NULL,
    version           bigint      NOT NULL,
    closed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (leaderboard_id, period)
);

-- ---------------------------------------------------------------------------------------
-- Monthly partitions, created ahead of need. Month arithmetic is done on UTC timestamps
-- (not timestamptz) so the session time zone cannot shift a boundary. Rows that already
-- sit in the DEFAULT partition for a new month are moved into the new partition.
CREATE FUNCTION ensure_monthly_partitions(
    parent text, key_column text, from_ts timestamptz, to_ts timestamptz
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month   timestamp := date_trunc('month', from_ts AT TIME ZONE 'UTC');
    last    timestamp := date_trunc('month', to_ts AT TIME ZONE 'UTC');
    deflt   text := parent || '_default';
    name    text;
    lo      text;
    hi      text;
    stray   boolean;
    created integer := 0;
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL OR from_ts > to_ts THEN
        RETURN 0;
    END IF;
    -- Serialise creators of the same parent: concurrent writers must not race on DDL.
    PERFORM pg_advisory_xact_lock(hashtext('ensure_monthly_partitions:' || parent));
    WHILE month <= last LOOP
        name := format('%s_y%sm%s', parent, to_char(month, 'YYYY'), to_char(month, 'MM'));
        IF to_regclass(quote_ident(name)) IS NULL THEN
            lo := to_char(month, 'YYYY-MM-DD') || ' 00:00:00+00';
            hi := to_char(month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
            stray := false;
            IF to_regclass(quote_ident(deflt)) IS NOT NULL THEN
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= %L AND %I < %L)',
                               deflt, key_column, lo, key_column, hi)
                    INTO stray;
            END IF;
            IF stray THEN
                EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', name, parent);
                EXECUTE format(
                    'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
                    'INSERT INTO %I SELECT * FROM moved',
                    deflt, key_column, lo, key_column, hi, name);
                EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                               parent, name, lo, hi);
            ELSE
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               name, parent, lo, hi);
            END IF;
            created := created + 1;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END;
$$;

CREATE FUNCTION ensure_audit_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT ensure_monthly_partitions('score_audit', 'occurred_at', from_ts, to_ts);
$$;

CREATE FUNCTION ensure_standings_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT ensure_monthly_partitions('period_standings', 'period_start', from_ts, to_ts);
$$;
