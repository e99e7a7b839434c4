-- Replicas cache credentials for a few seconds (src/grpc/auth_cache.rs). Every change of a
-- key or a store is announced on channel `checkout_auth_changes` on commit, whoever made it
-- (any replica, `checkout admin`, an operator's SQL), and every replica drops its cache.
-- Statement-level: one notification per statement is enough, and Postgres folds equal
-- notifications of one transaction into one.
CREATE FUNCTION checkout_notify_auth_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('checkout_auth_changes', TG_TABLE_NAME);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT
    EXECUTE FUNCTION checkout_notify_auth_change();

CREATE TRIGGER stores_changed
    AFTER UPDATE OR DELETE ON stores
    FOR EACH STATEMENT
    EXECUTE FUNCTION checkout_notify_auth_change();
