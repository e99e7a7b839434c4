-- bench/run.sh's stale-statistics part: :rows sessions (each with one line) inserted
-- straight into a running service's database, as months of traffic would leave them, while
-- autovacuum (and so ANALYZE) never runs. They spread over five stores (the demo store and
-- four more), both environments, every status, 5,000 customers and 30 days, so a plan that
-- picks the wrong index (by store, by customer) instead of the primary key shows.
-- psql variables: rows, store (the demo store's id), product (its product's numeric id),
-- version (that product's version id).
\set ON_ERROR_STOP on
ALTER TABLE sessions SET (autovacuum_enabled = false);
ALTER TABLE session_lines SET (autovacuum_enabled = false);

INSERT INTO stores (id, slug, name, active, approved_for_prod, created_at, updated_at)
SELECT 'st_' || lpad('bench' || g, 22, '0'), 'bench-store-' || g, 'Bench Store ' || g, true, true,
       (extract(epoch FROM now()) * 1000000)::bigint, (extract(epoch FROM now()) * 1000000)::bigint
FROM generate_series(1, 4) AS g;

INSERT INTO sessions (id, store_id, environment, status, currency, amount_subtotal,
    amount_discount, amount_total, success_url, cancel_url, auto_redirect, customer_id,
    buyer_email, billing_detail, metadata, order_merchant_external_id, affiliate_code,
    coupon_id, coupon_code, store_name, with_trial, client_token, order_id, created_at,
    expires_at, completed_at, ended_at)
SELECT 'cs_' || lpad(g::text, 22, '0'),
       CASE WHEN g % 5 = 0 THEN :'store' ELSE 'st_' || lpad('bench' || (g % 5), 22, '0') END,
       CASE WHEN g % 7 = 0 THEN 'prod' ELSE 'test' END,
       (ARRAY['open', 'completed', 'expired', 'cancelled'])[g % 4 + 1],
       'USD', 1999 * (1 + g % 3), 0, 1999 * (1 + g % 3),
       'https://shop' || (g % 5) || '.example.com/thanks?s={CHECKOUT_SESSION_ID}',
       'https://shop' || (g % 5) || '.example.com/cart', false,
       'cus_' || (g % 5000), 'buyer' || (g % 20000) || '@example.com', NULL,
       '{"cart":"c-' || g || '"}', 'order-' || g, NULL, NULL, NULL,
       CASE WHEN g % 5 = 0 THEN 'Demo Store' ELSE 'Bench Store ' || (g % 5) END,
       false, 'ct_' || md5(g::text), NULL,
       t.created, t.created + 2700000000,
       CASE WHEN g % 4 = 1 THEN t.created + 60000000 END,
       CASE WHEN g % 4 <> 0 THEN t.created + 60000000 END
FROM generate_series(1, :rows) AS g,
     LATERAL (SELECT (extract(epoch FROM now()) * 1000000)::bigint - (g::bigint * 12960000) % 2592000000000 AS created) AS t;

INSERT INTO session_lines (session_id, position, product_id, product_version_id, product_name,
    unit_amount, quantity, amount_total, billing_period, trial_days, subscription, server_id,
    gift_to_platform, gift_to_id, custom_variables, metadata)
SELECT 'cs_' || lpad(g::text, 22, '0'), 0, :product, :'version', 'Starter Pack', 1999,
       1 + g % 3, 1999 * (1 + g % 3), 'one_time', 0, false, NULL, NULL, NULL, '{}', '{}'
FROM generate_series(1, :rows) AS g;
