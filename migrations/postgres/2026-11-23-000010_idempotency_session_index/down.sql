DROP INDEX idempotency_keys_session;
