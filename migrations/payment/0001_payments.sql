-- The payment service's tables.

-- One payment per order: its checkout session with the provider and where
-- it stands (OPEN, PAID, CANCELLED, FAILED, REFUNDED).
CREATE TABLE payments (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    session_id TEXT NOT NULL UNIQUE,
    checkout_url TEXT NOT NULL,
    status TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    -- The provider's payment (Stripe PaymentIntent) once paid, for refunds.
    payment_ref TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Provider webhook events already handled, so each is processed once.
CREATE TABLE webhook_events (
    event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- The local checkout, which stands in for Stripe's hosted page: its
-- sessions, and the webhooks it still has to deliver.
CREATE TABLE local_checkout_sessions (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    line_items TEXT NOT NULL,
    status TEXT NOT NULL,
    payment_intent TEXT,
    success_url TEXT NOT NULL,
    cancel_url TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);

CREATE TABLE local_webhook_deliveries (
    event_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX local_webhook_deliveries_due ON local_webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL;
