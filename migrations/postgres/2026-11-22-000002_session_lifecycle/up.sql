-- ListSessions filters by customer within a store and environment, newest first.
CREATE INDEX sessions_store_customer ON sessions (store_id, environment, customer_id, created_at, id);

-- Every status change is announced on channel `checkout_session_events` with the session id
-- as payload, on commit, whichever replica (or operator) made it. Watchers on every replica
-- re-read the session when its id arrives. (SQLite has one replica and notifies in-process.)
CREATE FUNCTION checkout_notify_session_event() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('checkout_session_events', NEW.id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_status_changed
    AFTER UPDATE OF status ON sessions
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION checkout_notify_session_event();
