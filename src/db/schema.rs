// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Text,
        store_id -> Text,
        environment -> Text,
        secret_hash -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        secret_prefix -> Text,
    }
}

diesel::table! {
    coupons (id) {
        id -> Text,
        store_id -> Text,
        code -> Text,
        percent_off -> Nullable<Integer>,
        amount_off -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        expires_at -> Nullable<BigInt>,
        max_redemptions -> Nullable<Integer>,
        minimum_amount -> Nullable<BigInt>,
        redemptions -> Integer,
        created_at -> BigInt,
        active -> Bool,
    }
}

diesel::table! {
    event_counters (store_id, environment) {
        store_id -> Text,
        environment -> Text,
        last_position -> BigInt,
        purged_through -> BigInt,
        purged_tx -> BigInt,
    }
}

diesel::table! {
    feed_events (store_id, environment, tx, position) {
        store_id -> Text,
        environment -> Text,
        position -> BigInt,
        event_type -> Text,
        session_id -> Text,
        occurred_at -> BigInt,
        tx -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (store_id, environment, key) {
        store_id -> Text,
        environment -> Text,
        key -> Text,
        request_hash -> Text,
        session_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    orders (id) {
        id -> Text,
        session_id -> Text,
        store_id -> Text,
        environment -> Text,
        currency -> Text,
        amount_subtotal -> BigInt,
        amount_discount -> BigInt,
        amount_total -> BigInt,
        payment_reference -> Nullable<Text>,
        order_merchant_external_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    product_activations (product_id, environment) {
        product_id -> BigInt,
        environment -> Text,
        product_version_id -> Text,
        activated_at -> BigInt,
    }
}

diesel::table! {
    product_version_prices (product_version_id, currency) {
        product_version_id -> Text,
        currency -> Text,
        unit_amount -> BigInt,
    }
}

diesel::table! {
    product_versions (id) {
        id -> Text,
        product_id -> BigInt,
        number -> Integer,
        billing_period -> Text,
        trial_days -> Integer,
        created_at -> BigInt,
    }
}

diesel::table! {
    products (id) {
        id -> BigInt,
        store_id -> Text,
        name -> Text,
        description -> Text,
        requires_server_selection -> Bool,
        active -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    session_lines (session_id, position) {
        session_id -> Text,
        position -> Integer,
        product_id -> Nullable<BigInt>,
        product_version_id -> Nullable<Text>,
        product_name -> Text,
        unit_amount -> BigInt,
        quantity -> Integer,
        amount_total -> BigInt,
        billing_period -> Text,
        trial_days -> Integer,
        subscription -> Bool,
        server_id -> Nullable<Text>,
        gift_to_platform -> Nullable<Text>,
        gift_to_id -> Nullable<Text>,
        custom_variables -> Text,
        metadata -> Text,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        store_id -> Text,
        environment -> Text,
        status -> Text,
        currency -> Text,
        amount_subtotal -> BigInt,
        amount_discount -> BigInt,
        amount_total -> BigInt,
        success_url -> Nullable<Text>,
        cancel_url -> Nullable<Text>,
        auto_redirect -> Bool,
        customer_id -> Nullable<Text>,
        buyer_email -> Nullable<Text>,
        billing_detail -> Nullable<Text>,
        metadata -> Text,
        order_merchant_external_id -> Nullable<Text>,
        affiliate_code -> Nullable<Text>,
        coupon_id -> Nullable<Text>,
        coupon_code -> Nullable<Text>,
        store_name -> Text,
        with_trial -> Bool,
        client_token -> Text,
        order_id -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        completed_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    store_return_origins (store_id, origin) {
        store_id -> Text,
        origin -> Text,
    }
}

diesel::table! {
    stores (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        active -> Bool,
        approved_for_prod -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        store_id -> Text,
        endpoint_id -> Text,
        event_id -> Text,
        event_type -> Text,
        attempt -> Integer,
        response_status -> Nullable<Integer>,
        success -> Bool,
        error -> Nullable<Text>,
        duration_ms -> Integer,
        attempted_at -> BigInt,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        store_id -> Text,
        environment -> Text,
        url -> Text,
        secret -> Text,
        created_at -> BigInt,
        disabled_at -> Nullable<BigInt>,
        event_types -> Text,
        previous_secret -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<BigInt>,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        store_id -> Text,
        environment -> Text,
        event_type -> Text,
        session_id -> Text,
        payload -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    webhook_outbox (event_id, endpoint_id) {
        event_id -> Text,
        endpoint_id -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::joinable!(api_keys -> stores (store_id));
diesel::joinable!(coupons -> stores (store_id));
diesel::joinable!(feed_events -> sessions (session_id));
diesel::joinable!(idempotency_keys -> sessions (session_id));
diesel::joinable!(idempotency_keys -> stores (store_id));
diesel::joinable!(orders -> sessions (session_id));
diesel::joinable!(orders -> stores (store_id));
diesel::joinable!(product_activations -> product_versions (product_version_id));
diesel::joinable!(product_activations -> products (product_id));
diesel::joinable!(product_version_prices -> product_versions (product_version_id));
diesel::joinable!(product_versions -> products (product_id));
diesel::joinable!(products -> stores (store_id));
diesel::joinable!(session_lines -> sessions (session_id));
diesel::joinable!(sessions -> coupons (coupon_id));
diesel::joinable!(sessions -> stores (store_id));
diesel::joinable!(store_return_origins -> stores (store_id));
diesel::joinable!(webhook_deliveries -> stores (store_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_endpoints -> stores (store_id));
diesel::joinable!(webhook_events -> stores (store_id));
diesel::joinable!(webhook_outbox -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_outbox -> webhook_events (event_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    coupons,
    event_counters,
    feed_events,
    idempotency_keys,
    orders,
    product_activations,
    product_version_prices,
    product_versions,
    products,
    session_lines,
    sessions,
    store_return_origins,
    stores,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
    webhook_outbox,
);
