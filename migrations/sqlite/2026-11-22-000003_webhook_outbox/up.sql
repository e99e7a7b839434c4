-- The transactional outbox. An event is written in the same transaction as the state
-- change that causes it, with one delivery job per active endpoint of the store and
-- environment; dispatchers on any replica claim due jobs under a lease.
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY NOT NULL,
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    event_type TEXT NOT NULL,
    session_id TEXT NOT NULL,
    -- the exact bytes POSTed and signed
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_outbox (
    event_id TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- a dispatcher owns the job until then; also the fencing token for its result
    lease_until BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
