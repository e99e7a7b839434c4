-- checkout schema, SQLite flavour. migrations/postgres holds the same tables; the test
-- `schema_in_step` compares the two column by column.
-- Conventions (both backends):
--   * timestamps are BIGINT microseconds since the Unix epoch, UTC, so every query is
--     written once and compares the same way on both backends;
--   * money is BIGINT in the currency's minor unit;
--   * environment is 'test' or 'prod'; JSON maps are TEXT.

CREATE TABLE stores (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    approved_for_prod BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE store_return_origins (
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    origin TEXT NOT NULL,
    PRIMARY KEY (store_id, origin)
);

-- Only the SHA-256 of the secret is kept; the secret itself is shown once at creation.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    environment TEXT NOT NULL CHECK (environment IN ('test', 'prod')),
    secret_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_store ON api_keys (store_id);

-- Numeric id: the public `PROD_…` id is its base62 encoding.
CREATE TABLE products (
    id BIGINT PRIMARY KEY NOT NULL,
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    requires_server_selection BOOLEAN NOT NULL,
    active BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX products_store ON products (store_id);

-- Versions are immutable once created: a price change is a new version.
CREATE TABLE product_versions (
    id TEXT PRIMARY KEY NOT NULL,
    product_id BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    billing_period TEXT NOT NULL CHECK (billing_period IN ('one_time', 'month', 'year')),
    trial_days INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (product_id, number)
);

CREATE TABLE product_version_prices (
    product_version_id TEXT NOT NULL REFERENCES product_versions (id) ON DELETE CASCADE,
    currency TEXT NOT NULL,
    unit_amount BIGINT NOT NULL CHECK (unit_amount >= 0),
    PRIMARY KEY (product_version_id, currency)
);

-- Which version is sold in each environment.
CREATE TABLE product_activations (
    product_id BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    environment TEXT NOT NULL CHECK (environment IN ('test', 'prod')),
    product_version_id TEXT NOT NULL REFERENCES product_versions (id),
    activated_at BIGINT NOT NULL,
    PRIMARY KEY (product_id, environment)
);

CREATE TABLE coupons (
    id TEXT PRIMARY KEY NOT NULL,
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    code TEXT NOT NULL,
    percent_off INTEGER CHECK (percent_off BETWEEN 1 AND 100),
    amount_off BIGINT CHECK (amount_off > 0),
    currency TEXT,
    expires_at BIGINT,
    max_redemptions INTEGER CHECK (max_redemptions > 0),
    minimum_amount BIGINT CHECK (minimum_amount > 0),
    -- reserved by open sessions plus redeemed by completed ones; never above max_redemptions
    redemptions INTEGER NOT NULL DEFAULT 0 CHECK (redemptions >= 0),
    created_at BIGINT NOT NULL,
    UNIQUE (store_id, code),
    CHECK ((percent_off IS NULL) <> (amount_off IS NULL))
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    store_id TEXT NOT NULL REFERENCES stores (id),
    environment TEXT NOT NULL CHECK (environment IN ('test', 'prod')),
    status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'cancelled', 'expired')),
    currency TEXT NOT NULL,
    amount_subtotal BIGINT NOT NULL,
    amount_discount BIGINT NOT NULL,
    amount_total BIGINT NOT NULL,
    success_url TEXT,
    cancel_url TEXT,
    auto_redirect BOOLEAN NOT NULL,
    customer_id TEXT,
    buyer_email TEXT,
    billing_detail TEXT,
    metadata TEXT NOT NULL,
    order_merchant_external_id TEXT,
    affiliate_code TEXT,
    coupon_id TEXT REFERENCES coupons (id),
    coupon_code TEXT,
    store_name TEXT NOT NULL,
    with_trial BOOLEAN NOT NULL,
    -- bearer for the hosted page only; kept so an idempotent retry gets the same reply
    client_token TEXT NOT NULL,
    order_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    completed_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX sessions_store_created ON sessions (store_id, environment, created_at, id);
CREATE INDEX sessions_open_expiry ON sessions (expires_at) WHERE status = 'open';

-- The lines as locked at creation.
CREATE TABLE session_lines (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    product_id BIGINT,
    product_version_id TEXT,
    product_name TEXT NOT NULL,
    unit_amount BIGINT NOT NULL,
    quantity INTEGER NOT NULL,
    amount_total BIGINT NOT NULL,
    billing_period TEXT NOT NULL,
    trial_days INTEGER NOT NULL,
    subscription BOOLEAN NOT NULL,
    server_id TEXT,
    gift_to_platform TEXT,
    gift_to_id TEXT,
    custom_variables TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (session_id, position)
);

-- At most one order per session, enforced by the database.
CREATE TABLE orders (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL UNIQUE REFERENCES sessions (id),
    store_id TEXT NOT NULL REFERENCES stores (id),
    environment TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_subtotal BIGINT NOT NULL,
    amount_discount BIGINT NOT NULL,
    amount_total BIGINT NOT NULL,
    payment_reference TEXT,
    order_merchant_external_id TEXT,
    created_at BIGINT NOT NULL
);

-- Claimed first in CreateSession's transaction: a concurrent request with the same key
-- waits on this row (Postgres) or the writer lock (SQLite) and then replays the session.
CREATE TABLE idempotency_keys (
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    -- claimed before the session row exists, in the same transaction
    session_id TEXT NOT NULL REFERENCES sessions (id) DEFERRABLE INITIALLY DEFERRED,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (store_id, environment, key)
);

-- The signing secret must be readable to sign deliveries, so it is kept as given; it
-- never leaves the service after creation and is never logged.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    environment TEXT NOT NULL CHECK (environment IN ('test', 'prod')),
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX webhook_endpoints_store ON webhook_endpoints (store_id, environment);

-- One row per delivery attempt (the delivery log).
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    store_id TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    response_status INTEGER,
    success BOOLEAN NOT NULL,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    attempted_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_store ON webhook_deliveries (store_id, attempted_at, id);
