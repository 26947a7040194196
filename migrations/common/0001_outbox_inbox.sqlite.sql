-- Messages a transaction decided to publish. The relay publishes them in id
-- order and then deletes them (transactional outbox).
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    msg_key TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Ids of bus messages already applied, written in the same transaction as
-- their effects, so a redelivered message is a no-op (idempotent consumer).
CREATE TABLE processed_messages (
    event_id TEXT PRIMARY KEY,
    processed_at BIGINT NOT NULL
);
CREATE INDEX processed_messages_by_age ON processed_messages (processed_at);
