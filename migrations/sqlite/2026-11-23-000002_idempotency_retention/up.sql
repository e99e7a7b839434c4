-- The sweeper purges idempotency keys past their retention (CHECKOUT_IDEMPOTENCY_RETENTION_HOURS)
-- in batches ordered by age; this index finds them without scanning the table, with or
-- without planner statistics.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
