-- At the pay-until deadline an order is no longer cancelled at once: its
-- checkout session is closed first, and a payment made in time may settle
-- until `settle_by`. The deadline sweep reads `due_at`, the next time it
-- acts on a RESERVED order (`pay_until`, then `settle_by`). Milliseconds
-- since the Unix epoch.
ALTER TABLE orders ADD COLUMN settle_by BIGINT;
ALTER TABLE orders ADD COLUMN due_at BIGINT;
UPDATE orders SET due_at = pay_until WHERE status = 'RESERVED';
DROP INDEX orders_by_deadline;
CREATE INDEX orders_by_due_at ON orders (due_at) WHERE status = 'RESERVED';
