-- What retention deletes is found through an index, so pruning costs the
-- same however much is kept (backend/src/messaging/retention.rs).
CREATE INDEX webhook_events_by_age ON webhook_events (received_at);
CREATE INDEX local_webhook_deliveries_delivered ON local_webhook_deliveries (delivered_at)
    WHERE delivered_at IS NOT NULL;
CREATE INDEX local_checkout_sessions_by_expiry ON local_checkout_sessions (expires_at);
CREATE INDEX refund_retries_finished ON refund_retries (updated_at) WHERE status <> 'PENDING';
CREATE INDEX checkout_delays_by_age ON checkout_delays (created_at);
