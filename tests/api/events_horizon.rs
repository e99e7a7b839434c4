//! PostgreSQL feed positions are (transaction id, sequence) and readers read only below the
//! oldest transaction still running (src/db/feed.rs). Here a transaction that writes but
//! sends no event holds an event back: no one may read it while that transaction runs, and
//! watchers on both replicas get it soon after it ends, without another write to wake them.
use crate::{
    events::{list_all, next_event, watch},
    fixtures::{catalog, created, line, order},
    helpers::{Ctx, TestApp},
    TestFn,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::time::{Duration, Instant};

pub fn postgres_only() -> Vec<(&'static str, TestFn)> {
    vec![(
        "postgres_only::events_horizon::an_older_running_transaction_holds_events_back",
        |ctx| Box::pin(an_older_running_transaction_holds_events_back(ctx)),
    )]
}

async fn an_older_running_transaction_holds_events_back(ctx: Ctx) {
    let a = TestApp::spawn(&ctx).await;
    let b = a.replica().await;
    let c = catalog(&a).await;
    let key = c.shop.test_key.clone();
    let first = created(&a, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let before = list_all(&a, &key, "").await;
    assert_eq!(before.last().unwrap().session_id, first.id);
    let cursor = before.last().unwrap().cursor.clone();
    let mut on_a = watch(&a, &key, &cursor, &[]).await.expect("watch on A");
    let mut on_b = watch(&b, &key, &cursor, &[]).await.expect("watch on B");

    // An unrelated transaction takes a transaction id and stays open.
    let mut holder = AsyncPgConnection::establish(&a.db.url).await.unwrap();
    holder
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .unwrap();
    let held = created(&a, &c, order(vec![line(&c.widget, 2)], "USD")).await;

    // Committed, but behind a running transaction that began writing before it.
    let pending = tokio::time::timeout(Duration::from_millis(600), on_a.message()).await;
    assert!(
        pending.is_err(),
        "no event while the older transaction runs: {pending:?}"
    );
    assert!(
        list_all(&b, &key, &cursor).await.is_empty(),
        "ListEvents does not show it either"
    );

    // Its end wakes no one (it wrote no event); readers look again by themselves.
    let ended = Instant::now();
    holder.batch_execute("COMMIT").await.unwrap();
    for stream in [&mut on_a, &mut on_b] {
        let e = next_event(stream).await;
        assert_eq!(e.session_id, held.id);
    }
    assert!(
        ended.elapsed() < Duration::from_secs(5),
        "delivered soon after the transaction ended, not by the 30 s safety poll: {:?}",
        ended.elapsed()
    );
    let after = list_all(&a, &key, &cursor).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].session_id, held.id);
}
