-- Participant profiles (display name, avatar, country, free metadata), projected from the
-- compacted `participants` topic by the sinks worker: one row per participant, the latest
-- record of the topic. Numbered 0004 so that another pending migration can take 0003.
CREATE TABLE IF NOT EXISTS participants (
    participant_id   text PRIMARY KEY,
    display_name     text,
    avatar_url       text,
    country          text CHECK (country IS NULL OR country ~ '^[A-Z]{2}$'),
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_by       text        NOT NULL DEFAULT 'service',
    updated_at       timestamptz NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE participants IS
    'Current participant profiles: the latest ParticipantProfileUpdated of each participant on the participants topic.';
COMMENT ON COLUMN participants.updated_at IS
    'When the gateway or CLI accepted the change (information; the log order decides).';
