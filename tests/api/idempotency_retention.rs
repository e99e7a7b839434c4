//! Idempotency keys are kept for CHECKOUT_IDEMPOTENCY_RETENTION_HOURS (72 in tests, the
//! default) and then purged by the sweeper: the same key creates a new session afterwards.
use crate::{
    fixtures::{catalog, line, order},
    helpers::{with_md, Ctx, TestApp},
};
use checkout::{domain::time::Timestamp, pb};
use std::time::{Duration, Instant};

const HOUR_MICROS: i64 = 3_600_000_000;

async fn create_with_key(app: &TestApp, api_key: &str, widget: &str, idem: &str) -> String {
    let req = with_md(
        order(vec![line(widget, 1)], "USD"),
        &[
            ("authorization", &format!("Bearer {api_key}")),
            ("x-context-environment", "test"),
            ("idempotency-key", idem),
        ],
    );
    let reply: pb::CreateSessionResponse = app
        .checkout()
        .create_session(req)
        .await
        .expect("create session")
        .into_inner();
    reply.session.expect("session").id
}

pub async fn keys_past_retention_are_purged(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let key = c.shop.test_key.clone();
    let old = create_with_key(&app, &key, &c.widget, "old-key").await;
    let kept = create_with_key(&app, &key, &c.widget, "kept-key").await;
    // As if the keys had been claimed 73 h and 71 h ago (retention: 72 h).
    let now = Timestamp::now().0;
    // (Stored keys carry the caller's keyspace as a prefix, e.g. `key:old-key`.)
    for (idem, hours) in [("old-key", 73), ("kept-key", 71)] {
        app.sql(&format!(
            "UPDATE idempotency_keys SET created_at = {} WHERE key LIKE '%:{idem}'",
            now - hours * HOUR_MICROS
        ))
        .await;
    }
    // Until the sweeper gets to it the old key still replays; then it is free again and
    // creates a new session.
    let deadline = Instant::now() + Duration::from_secs(20);
    let fresh = loop {
        let id = create_with_key(&app, &key, &c.widget, "old-key").await;
        if id != old {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "a key past retention was never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The new claim is an ordinary key: a retry replays the new session.
    assert_eq!(
        create_with_key(&app, &key, &c.widget, "old-key").await,
        fresh
    );
    // The purge that freed the old key also saw this one, still within retention.
    assert_eq!(
        create_with_key(&app, &key, &c.widget, "kept-key").await,
        kept
    );
}
