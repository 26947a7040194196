-- Provider trouble the payment service keeps track of (issue 19).

-- Orders whose checkout session could not be opened because the provider
-- was unavailable: the order service is told once, when the row is made.
CREATE TABLE checkout_delays (
    order_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Refunds of late payments that did not go through at the first attempt,
-- retried by the refund sweep with growing pauses: PENDING while retried,
-- REFUNDED once one went through, FAILED once the sweep gave up.
-- `refusals` counts the provider's definite refusals: each later attempt
-- goes under a new idempotency key.
CREATE TABLE refund_retries (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    refusals BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX refund_retries_due ON refund_retries (next_attempt_at) WHERE status = 'PENDING';
