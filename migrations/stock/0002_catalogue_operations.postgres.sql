-- Operators run the catalogue: products describe themselves (description,
-- category, image), can be withdrawn from sale, and lose units to
-- write-offs. For every product now
--   available + reserved + sold + written_off = received,
-- where received counts the first stock and every restock.

ALTER TABLE products ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE products ADD COLUMN category TEXT NOT NULL DEFAULT '';
ALTER TABLE products ADD COLUMN image_url TEXT;
ALTER TABLE products ADD COLUMN written_off BIGINT NOT NULL DEFAULT 0 CHECK (written_off >= 0);
-- When an operator withdrew it (ms since the epoch); NULL while listed.
ALTER TABLE products ADD COLUMN withdrawn_at BIGINT;
ALTER TABLE products RENAME COLUMN restocked TO received;
-- PostgreSQL's name for the table's unnamed CHECK of 0001.
ALTER TABLE products DROP CONSTRAINT products_check;
ALTER TABLE products ADD CONSTRAINT products_units_conserved
    CHECK (available + reserved + sold + written_off = received);

-- One row per operator command (its id derives from the operator and the
-- idempotency key): what was asked and what came of it, so that the same
-- command again applies nothing and gets the same answer.
CREATE TABLE catalog_commands (
    command_id TEXT PRIMARY KEY,
    -- The change as JSON: the same key with another change is refused.
    change TEXT NOT NULL,
    -- The catalog.events.v1 outcome as JSON.
    outcome TEXT NOT NULL,
    decided_at BIGINT NOT NULL
);

-- The audit log: every applied change, who made it, when, and each
-- field's old and new value. Kept for good.
CREATE TABLE catalog_audit (
    command_id TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    at BIGINT NOT NULL,
    sku TEXT NOT NULL,
    action TEXT NOT NULL,
    -- [{"field": …, "old": …, "new": …}] as JSON.
    changes TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);

CREATE INDEX catalog_audit_by_sku ON catalog_audit (sku, at);
