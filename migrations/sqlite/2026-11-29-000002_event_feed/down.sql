DROP TABLE feed_events;
DROP TABLE event_counters;
