-- The first characters of a new key (`sk_test_ab12`), to tell keys apart in ListApiKeys;
-- empty for keys created before it was recorded. Never enough to use or guess the key.
ALTER TABLE api_keys ADD COLUMN secret_prefix TEXT NOT NULL DEFAULT '';
-- UpdateCoupon can deactivate a coupon: CreateSession then refuses its code.
ALTER TABLE coupons ADD COLUMN active BOOLEAN NOT NULL DEFAULT TRUE;
-- The event types an endpoint receives, comma-separated; empty: every type.
ALTER TABLE webhook_endpoints ADD COLUMN event_types TEXT NOT NULL DEFAULT '';
-- After RotateWebhookEndpointSecret: the replaced secret, sealed like `secret` (with its own
-- associated data), which also signs deliveries until previous_secret_expires_at.
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at BIGINT;
-- DeleteWebhookEndpoint keeps the row (its delivery log stays readable) but erases its
-- secrets and stops every delivery to it.
ALTER TABLE webhook_endpoints ADD COLUMN deleted_at BIGINT;
