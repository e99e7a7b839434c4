ALTER TABLE event_counters DROP COLUMN purged_tx;
CREATE TABLE feed_events_old (
    store_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    position BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    session_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    PRIMARY KEY (store_id, environment, position)
);
INSERT INTO feed_events_old SELECT store_id, environment, position, event_type, session_id, occurred_at FROM feed_events;
DROP TABLE feed_events;
ALTER TABLE feed_events_old RENAME TO feed_events;
CREATE INDEX feed_events_occurred_at ON feed_events (occurred_at);
