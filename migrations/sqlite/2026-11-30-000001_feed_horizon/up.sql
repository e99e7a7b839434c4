-- PostgreSQL's feed positions became (tx, position) (see its migration of this name). On
-- SQLite, with one writer at a time, the counter still hands out positions in commit order
-- and tx is always 0; the table is rebuilt so that its primary key is the order readers
-- read in, and WITHOUT ROWID: the rows live in that key's B-tree, so an event costs one
-- B-tree fewer to write.
CREATE TABLE feed_events_new (
    store_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    tx BIGINT NOT NULL DEFAULT 0,
    position BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    session_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    PRIMARY KEY (store_id, environment, tx, position)
) WITHOUT ROWID;
INSERT INTO feed_events_new (store_id, environment, tx, position, event_type, session_id, occurred_at)
    SELECT store_id, environment, 0, position, event_type, session_id, occurred_at FROM feed_events;
DROP TABLE feed_events;
ALTER TABLE feed_events_new RENAME TO feed_events;
CREATE INDEX feed_events_occurred_at ON feed_events (occurred_at);

ALTER TABLE event_counters ADD COLUMN purged_tx BIGINT NOT NULL DEFAULT 0;
