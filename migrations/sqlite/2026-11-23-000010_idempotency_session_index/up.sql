-- The key is claimed before its session exists (the foreign key is deferred), so inserting
-- the session must find the keys that reference it; without this index SQLite scanned the
-- whole table on every create, slower with every key kept.
CREATE INDEX idempotency_keys_session ON idempotency_keys (session_id);
