-- The catalogue's audit log as operators read it through the gateway,
-- kept from catalog.events.v1 by the gateway consumer group (the stock
-- service keeps its own copy, which is the record).
CREATE TABLE catalog_audit (
    command_id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    at BIGINT NOT NULL,
    -- The audit entry as JSON.
    entry TEXT NOT NULL
);

CREATE INDEX catalog_audit_by_time ON catalog_audit (at);
CREATE INDEX catalog_audit_by_sku ON catalog_audit (sku, at);
