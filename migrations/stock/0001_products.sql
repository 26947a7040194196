-- The stock service's tables. For every product,
-- available + reserved + sold = restocked, and only restocks change it.

CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    unit_price BIGINT NOT NULL CHECK (unit_price >= 0),
    currency TEXT NOT NULL,
    available BIGINT NOT NULL CHECK (available >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold BIGINT NOT NULL DEFAULT 0 CHECK (sold >= 0),
    restocked BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    CHECK (available + reserved + sold = restocked)
);

-- One row per order the service has seen: RESERVED, REJECTED, RELEASED or
-- COMMITTED. It makes reservation at most once per order.
CREATE TABLE stock_orders (
    order_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE reservations (
    order_id TEXT NOT NULL REFERENCES stock_orders (order_id),
    sku TEXT NOT NULL REFERENCES products (sku),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);
