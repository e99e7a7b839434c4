DROP TRIGGER stores_changed ON stores;
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION checkout_notify_auth_change();
