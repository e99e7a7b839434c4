DROP TRIGGER sessions_status_changed ON sessions;
DROP FUNCTION checkout_notify_session_event();
DROP INDEX sessions_store_customer;
