-- Whether a completed local checkout session is paid yet: a delayed payment
-- method completes the session unpaid and settles a moment later.
ALTER TABLE local_checkout_sessions ADD COLUMN payment_status TEXT NOT NULL DEFAULT 'unpaid';
