ALTER TABLE webhook_endpoints DROP COLUMN deleted_at;
ALTER TABLE webhook_endpoints DROP COLUMN previous_secret_expires_at;
ALTER TABLE webhook_endpoints DROP COLUMN previous_secret;
ALTER TABLE webhook_endpoints DROP COLUMN event_types;
ALTER TABLE coupons DROP COLUMN active;
ALTER TABLE api_keys DROP COLUMN secret_prefix;
