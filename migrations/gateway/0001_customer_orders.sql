-- The gateway's customer-orders projection: the newest snapshot of every
-- order, as `orders.v1` carries it, kept by the gateway's consumer group so
-- that a customer's orders are read from here, not replayed into memory.
--   state: the order's OrderState as JSON (the event's payload)
--   held:  the units the order holds while NEW or RESERVED, else 0
-- A snapshot replaces the stored one only when its version is newer.
CREATE TABLE customer_orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    held BIGINT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX customer_orders_by_customer
    ON customer_orders (customer_id, created_at, order_id);
