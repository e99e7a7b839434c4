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
