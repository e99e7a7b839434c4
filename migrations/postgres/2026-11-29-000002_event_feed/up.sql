-- The event feed (SPEC §11). One counter row per store and environment hands out feed
-- positions: a writer increments it as the last statement before COMMIT, so its row lock is
-- held until the commit and the next writer of that store gets the next position only after
-- it. Positions are therefore gap-free and in commit order (see src/db/feed.rs).
-- `purged_through` is the highest position the retention purge deleted: a cursor below it
-- has lost events (`Cursor expired`).
CREATE TABLE event_counters (
    store_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    last_position BIGINT NOT NULL,
    purged_through BIGINT NOT NULL,
    PRIMARY KEY (store_id, environment)
);

-- Read by primary key range only: (store, environment, position > cursor).
CREATE TABLE feed_events (
    store_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    position BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    session_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    PRIMARY KEY (store_id, environment, position)
);
-- The retention purge picks the oldest rows by this index.
CREATE INDEX feed_events_occurred_at ON feed_events (occurred_at);

-- Wakes the feed watchers of every replica (src/workers.rs listener). Identical
-- notifications of one transaction are folded into one by PostgreSQL.
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
