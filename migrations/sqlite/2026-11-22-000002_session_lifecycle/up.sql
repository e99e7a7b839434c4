-- ListSessions filters by customer within a store and environment, newest first.
CREATE INDEX sessions_store_customer ON sessions (store_id, environment, customer_id, created_at, id);
