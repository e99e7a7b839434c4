//! The integration suite: every test runs through a real gRPC client against a real server
//! on 127.0.0.1:0 and a real database, once on SQLite and, when TEST_DATABASE_URL is set,
//! once more on PostgreSQL. A custom harness (libtest-mimic) lets it say plainly which
//! backends ran.
mod admin;
mod admin_cli;
mod admin_lists;
mod auth;
mod auth_limits;
mod auth_replicas;
mod browser;
mod catalog;
mod connections;
mod create_errors;
mod create_rules;
mod echo_bounds;
mod events;
mod events_cli;
mod events_faults;
mod events_horizon;
mod events_live;
mod events_memory;
mod events_shared;
mod exposition;
mod fixtures;
mod grpc_web;
mod header_limit;
mod health;
mod helpers;
mod idempotency;
mod idempotency_retention;
mod lifecycle;
mod logs;
mod malformed;
mod malformed_fuzz;
mod metrics_listener;
mod operations;
mod packaging;
mod proto_docs;
mod raw_h2;
mod receiver;
mod secrets;
mod server;
mod session_views;
mod sqlite_wal;
mod storage;
mod tls;
mod tls_reload;
mod tooling;
mod violations;
mod watch;
mod watch_scale;
mod webhook_admin;
mod webhook_dns;
mod webhook_rotation;
mod webhook_update_dns;
mod webhooks;

use checkout::db::Backend;
use futures_util::future::BoxFuture;
use helpers::Ctx;
use libtest_mimic::{Arguments, Failed, Trial};

pub type TestFn = fn(Ctx) -> BoxFuture<'static, ()>;

/// Registers `module::test` functions under their module-qualified names.
macro_rules! tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$((concat!(stringify!($module), "::", stringify!($name)), (|ctx| Box::pin($module::$name(ctx))) as TestFn)),*]
    };
}

fn all_tests() -> Vec<(&'static str, TestFn)> {
    let mut all = tests![
        auth::no_credentials_is_unauthenticated,
        auth::malformed_and_unknown_keys_are_unauthenticated,
        auth::revoked_key_is_unauthenticated,
        auth::key_of_other_environment_is_permission_denied,
        auth::environment_header_is_required,
        auth::inactive_store_is_permission_denied,
        auth::prod_requires_approval,
        auth::store_slug_auth_rules,
        auth::platform_token_guards_admin_and_hosted,
        auth_limits::failed_authentications_are_limited_per_peer,
        admin::store_round_trip,
        admin::store_validation,
        admin::api_key_round_trip,
        catalog::product_and_versions_round_trip,
        catalog::catalog_validation,
        catalog::concurrent_versions_get_distinct_numbers,
        catalog::coupon_round_trip,
        admin::webhook_endpoints,
        admin::cli_provisions_what_the_server_serves,
        admin_lists::list_stores_pages_newest_first,
        admin_lists::list_api_keys_never_shows_a_secret,
        admin_lists::list_products_matches_get_product,
        admin_lists::deactivated_coupon_is_refused,
        admin_cli::cli_lists_and_manages,
        webhook_admin::endpoint_list_update_delete,
        webhook_admin::deliveries_follow_subscriptions,
        webhook_admin::rotation_signs_with_both_during_the_overlap,
        webhook_rotation::previous_secret_is_resealed_at_start,
        webhook_rotation::concurrent_rotations_form_one_chain,
        webhook_update_dns::new_url_is_checked_like_registration,
        server::reflection_v1_and_v1alpha_list_the_services,
        proto_docs::reflection_serves_comments_and_language_options,
        server::health_is_serving,
        server::accepted_connections_have_nodelay,
        server::oversized_request_is_refused,
        server::shutdown_is_prompt,
        health::database_outage_is_not_serving,
        health::shutdown_delay_serves_then_drains,
        health::open_watch_does_not_hold_shutdown,
        connections::silent_connections_are_closed_after_the_handshake_timeout,
        connections::connection_cap_keeps_existing_clients_served,
        header_limit::oversized_metadata_is_resource_exhausted,
        storage::no_plaintext_api_key_in_storage,
        secrets::no_plaintext_webhook_secret_or_client_token_in_storage,
        secrets::plaintext_rows_of_an_older_version_are_sealed_at_start,
        secrets::wrong_key_refused_and_rotation_reseals,
        secrets::key_file_on_sqlite_key_required_on_postgres,
        webhook_dns::names_resolving_inside_are_refused_at_registration,
        storage::demo_seed_runs_once_and_works,
        storage::restart_keeps_data,
        create_errors::missing_required_fields,
        create_errors::invalid_currency_format,
        create_errors::invalid_product_id_format,
        create_errors::order_merchant_external_id_rules,
        create_errors::invalid_billing_detail,
        create_errors::api_checkout_not_enabled,
        create_errors::return_url_rules,
        create_errors::product_not_found,
        create_errors::product_of_another_store,
        create_errors::product_not_active_for_environment,
        create_errors::product_inactive,
        create_errors::server_selection_required,
        create_errors::currency_not_supported,
        create_errors::coupon_refusals,
        create_errors::refusals_write_nothing,
        echo_bounds::huge_values_are_cut_in_errors,
        violations::every_violation_in_one_reply,
        create_rules::locks_catalog_values,
        create_rules::minor_units_per_currency,
        create_rules::amounts_never_overflow,
        create_rules::ttl_and_auto_redirect,
        create_rules::limits_on_lines_and_maps,
        create_rules::inline_products_and_subscriptions,
        session_views::store_slug_rights,
        session_views::free_orders,
        session_views::get_session_views,
        session_views::unexpected_failures_are_opaque,
        idempotency::same_key_same_session,
        idempotency::finished_session_refuses_its_key,
        idempotency::concurrent_same_key_creates_one_session,
        idempotency::coupon_race_never_over_redeems,
        idempotency::tenancy_and_environment_isolation,
        idempotency_retention::keys_past_retention_are_purged,
        lifecycle::complete_creates_one_order,
        lifecycle::cancel_and_expire_release_coupons,
        lifecycle::concurrent_completes_make_one_order,
        lifecycle::complete_cancel_expire_race,
        lifecycle::sweeper_expires_within_a_second,
        lifecycle::list_sessions_filters_and_pages,
        watch::current_state_then_changes_then_end,
        watch::many_watchers_see_the_end,
        watch::shutdown_ends_open_streams,
        watch_scale::one_read_per_change_for_many_watchers,
        watch_scale::burst_during_a_read_is_coalesced_not_lost,
        watch_scale::expiry_reaches_watchers_without_a_notification,
        webhooks::signed_events_are_delivered,
        webhooks::retries_until_the_receiver_is_up,
        webhooks::delivered_after_restart,
        webhooks::two_dispatchers_deliver_each_event_once,
        webhooks::gone_disables_the_endpoint,
        webhooks::private_targets_refused_at_send_time,
        operations::rate_limit_is_per_key,
        operations::metrics_show_counters_moving,
        metrics_listener::exposition_is_valid_with_process_metrics,
        metrics_listener::oversized_request_heads_are_refused_in_bounded_memory,
        metrics_listener::idle_connections_are_closed,
        metrics_listener::trickled_request_head_is_cut_off,
        metrics_listener::connections_past_the_cap_wait,
        metrics_listener::stopping_closes_metrics_connections,
        operations::sigterm_loses_no_calls_in_flight,
        operations::traces_reach_an_otlp_collector,
        malformed::undecodable_bodies_are_invalid_argument,
        malformed::framing_and_content_type_errors,
        malformed_fuzz::generated_bad_bodies_never_fail_the_server,
        tooling::grpcurl_decodes_error_details,
        grpc_web::preflight_is_answered_for_any_origin,
        grpc_web::storefront_calls_over_grpc_web,
        grpc_web::watch_streams_over_grpc_web,
        grpc_web::secret_keys_are_refused_from_browsers,
        browser::storefront_page_in_chromium,
        tooling::admin_cli_is_described_and_works_as_documented,
        tooling::banner_commands_run_as_printed,
        logs::every_rpc_is_logged_with_its_request_id,
        logs::webhook_failures_warn_and_pipes_get_no_colour,
        logs::spans_show_server_faults,
        packaging::health_probe_exit_codes,
        packaging::loadgen_counts_errors_by_code,
        tls::serves_over_tls_and_refuses_plaintext,
        tls::bad_tls_files_stop_the_start,
        tls::mtls_requires_a_client_certificate_of_the_ca,
        tls::grpcurl_with_cacert,
        tls_reload::changed_files_are_picked_up,
        tls_reload::sighup_reloads_and_bad_files_keep_the_old_certificate,
        events::every_transition_is_one_event,
        events::feeds_are_isolated,
        events::list_filters_and_pages,
        events::cursor_expires_with_retention,
        events_live::watch_replays_then_continues_live,
        events_memory::slow_consumers_cost_a_page_and_get_everything,
        events_live::concurrent_writers_and_resuming_consumers,
        events_live::watch_ends_unavailable_on_shutdown,
        events_shared::many_streams_share_reads_and_each_gets_its_own_events,
        events_cli::tail_prints_json_lines,
    ];
    all.extend(auth_replicas::postgres_only());
    all.extend(events_faults::postgres_only());
    all.extend(events_horizon::postgres_only());
    all.extend(events_live::postgres_only());
    all.extend(storage::postgres_only());
    all.extend(watch::postgres_only());
    all.extend(health::postgres_only());
    all.extend(sqlite_wal::sqlite_only());
    all
}

fn run(ctx: Ctx, test: TestFn) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("runtime: {e}")))?;
    rt.block_on(test(ctx));
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // The servers' logs, when asked for (e.g. RUST_LOG=checkout=debug).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = checkout::telemetry::init("text", None);
    }
    // The tests wait on I/O far more than on CPU; run more than one per core by default.
    if args.test_threads.is_none() {
        args.test_threads = Some(4);
    }
    let pg_url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    match &pg_url {
        None => println!(
            "\nPostgres: SKIPPED (TEST_DATABASE_URL is not set). The suite runs on SQLite only;\n\
             set TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres to run it on PostgreSQL too.\n"
        ),
        Some(_) => println!("\nRunning the suite on SQLite and on PostgreSQL (TEST_DATABASE_URL).\n"),
    }
    let mut trials = Vec::new();
    for (name, test) in all_tests() {
        let sqlite = Ctx {
            backend: Backend::Sqlite,
            pg_url: None,
        };
        let postgres = Ctx {
            backend: Backend::Postgres,
            pg_url: pg_url.clone(),
        };
        if !name.starts_with("postgres_only::") {
            let sqlite_name = format!("sqlite::{}", name.trim_start_matches("sqlite_only::"));
            trials.push(Trial::test(sqlite_name, move || run(sqlite, test)));
        }
        // SQLite-only tests are about SQLite's files; PostgreSQL has no counterpart.
        if name.starts_with("sqlite_only::") {
            continue;
        }
        let pg_name = format!("postgres::{}", name.trim_start_matches("postgres_only::"));
        trials.push(
            Trial::test(pg_name, move || run(postgres, test)).with_ignored_flag(pg_url.is_none()),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}
