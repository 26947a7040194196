-- The records of compacted topics that memory gave up (every reader of the
-- process had passed them, some time ago): the newest per key, where a new
-- reader finds them. A record replaces the kept one of its key only when
-- newer.
CREATE TABLE IF NOT EXISTS bus_latest (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    record_offset INTEGER NOT NULL,
    headers TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (topic, part, record_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bus_latest_by_offset ON bus_latest (topic, part, record_offset);
