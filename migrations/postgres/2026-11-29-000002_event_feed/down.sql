DROP TRIGGER feed_events_inserted ON feed_events;
DROP FUNCTION checkout_notify_feed();
DROP TABLE feed_events;
DROP TABLE event_counters;
