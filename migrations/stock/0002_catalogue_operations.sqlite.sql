-- Operators run the catalogue: products describe themselves (description,
-- category, image), can be withdrawn from sale, and lose units to
-- write-offs. For every product now
--   available + reserved + sold + written_off = received,
-- where received counts the first stock and every restock.
--
-- SQLite cannot change a table's CHECK, so products is rebuilt; so is
-- reservations, whose foreign key names products (renaming products_new
-- rewrites that reference, and nothing ever points at a dropped table).

CREATE TABLE products_new (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    image_url TEXT,
    unit_price BIGINT NOT NULL CHECK (unit_price >= 0),
    currency TEXT NOT NULL,
    available BIGINT NOT NULL CHECK (available >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold BIGINT NOT NULL DEFAULT 0 CHECK (sold >= 0),
    written_off BIGINT NOT NULL DEFAULT 0 CHECK (written_off >= 0),
    received BIGINT NOT NULL,
    -- When an operator withdrew it (ms since the epoch); NULL while listed.
    withdrawn_at BIGINT,
    version BIGINT NOT NULL DEFAULT 1,
    CHECK (available + reserved + sold + written_off = received)
);

INSERT INTO products_new (sku, name, unit_price, currency, available, reserved, sold, received, version)
SELECT sku, name, unit_price, currency, available, reserved, sold, restocked, version FROM products;

CREATE TABLE reservations_new (
    order_id TEXT NOT NULL REFERENCES stock_orders (order_id),
    sku TEXT NOT NULL REFERENCES products_new (sku),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);

INSERT INTO reservations_new SELECT order_id, sku, quantity, unit_price FROM reservations;

DROP TABLE reservations;
DROP TABLE products;
ALTER TABLE products_new RENAME TO products;
ALTER TABLE reservations_new RENAME TO reservations;

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
