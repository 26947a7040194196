-- The order service's tables. Times are milliseconds since the Unix epoch;
-- money is integer minor units.

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    currency TEXT,
    total BIGINT,
    -- The pay-until deadline of a RESERVED order; the expiry sweep reads it.
    pay_until BIGINT,
    checkout_url TEXT,
    checkout_session_id TEXT,
    refunded BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX orders_by_deadline ON orders (pay_until) WHERE status = 'RESERVED';

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line_no BIGINT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    name TEXT,
    unit_price BIGINT,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_timeline (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    at BIGINT NOT NULL,
    detail TEXT,
    PRIMARY KEY (order_id, seq)
);
