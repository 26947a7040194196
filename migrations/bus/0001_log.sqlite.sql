-- The log of the in-process bus (embedded mode): topics, the records of
-- each partition, where a partition trimmed empty ends, and the offsets
-- consumer groups committed.
--
-- A log written before migrations were recorded has these tables already
-- and no `schema_migrations`: IF NOT EXISTS lets this migration find them.

CREATE TABLE IF NOT EXISTS bus_topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS bus_records (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    record_offset INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (topic, part, record_offset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bus_log_end (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bus_group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, part)
) WITHOUT ROWID;
