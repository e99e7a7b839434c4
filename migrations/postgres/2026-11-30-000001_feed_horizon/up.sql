-- Feed positions without a lock held through COMMIT (see src/db/feed.rs). The counter row
-- of 2026-11-29 made the commits of one store flush one after another, and the NOTIFY in
-- the writer's transaction made every notifying commit of the cluster do the same (it takes
-- a cluster-wide lock held until after the commit). Now an event's position is
-- (tx, position): the id of the transaction that wrote it and a sequence number, both taken
-- without waiting for anyone; readers read only below the oldest transaction still running,
-- so nothing can commit behind what they have read.
--
-- Events written before this migration keep their positions with tx = 0: they sort before
-- every new event, and cursors handed out for them stay valid.
ALTER TABLE feed_events ADD COLUMN tx BIGINT NOT NULL DEFAULT 0;
ALTER TABLE feed_events ALTER COLUMN tx SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE SEQUENCE feed_events_position OWNED BY feed_events.position;
ALTER TABLE feed_events ALTER COLUMN position SET DEFAULT nextval('feed_events_position');
ALTER TABLE feed_events DROP CONSTRAINT feed_events_pkey;
ALTER TABLE feed_events ADD PRIMARY KEY (store_id, environment, tx, position);

-- Replicas now announce new events after their commit (src/feed.rs, FeedNotifier).
DROP TRIGGER feed_events_inserted ON feed_events;
DROP FUNCTION checkout_notify_feed();

-- The purge records the highest (tx, position) it deleted. `last_position` is no longer
-- written: it stays the last position handed out before this migration (a cursor with
-- tx = 0 beyond it names no event).
ALTER TABLE event_counters ADD COLUMN purged_tx BIGINT NOT NULL DEFAULT 0;
