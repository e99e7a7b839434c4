ALTER TABLE event_counters DROP COLUMN purged_tx;
CREATE FUNCTION checkout_notify_feed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('checkout_feed', NEW.store_id || ' ' || NEW.environment);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER feed_events_inserted
    AFTER INSERT ON feed_events
    FOR EACH ROW
    EXECUTE FUNCTION checkout_notify_feed();
-- Positions of events written since cannot be mapped back to one counter.
DELETE FROM feed_events WHERE tx <> 0;
ALTER TABLE feed_events DROP CONSTRAINT feed_events_pkey;
ALTER TABLE feed_events ADD PRIMARY KEY (store_id, environment, position);
ALTER TABLE feed_events ALTER COLUMN position DROP DEFAULT;
DROP SEQUENCE feed_events_position;
ALTER TABLE feed_events DROP COLUMN tx;
