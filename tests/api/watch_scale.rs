//! WatchSession at scale: one read per change however many watch, notifications coalesced
//! but never lost, and expiry reaching watchers by the clock alone. (Timing is measured by
//! benchmarks, not here: these tests check counts and outcomes.)
use crate::{
    fixtures::{catalog, created, line, order},
    helpers::{keyed, Ctx, TestApp},
    lifecycle::complete,
    operations::{scrape, value},
    watch::{ended, next, watch},
};
use checkout::{
    db::{connect::PoolOptions, Backend, Db},
    domain::{session_state::Status, time::Timestamp},
    events::Hub,
    metrics::Metrics,
    pb::{self, checkout_service_client::CheckoutServiceClient},
};
use futures_util::future::join_all;
use std::{future::Future, sync::Arc, time::Duration};
use tonic::transport::Channel;

const READS: &str = "checkout_watch_session_reads_total";

/// 500 watchers of one session, spread over four HTTP/2 connections, all get the ending, and
/// the server read the session once for it, not once per watcher.
pub async fn one_read_per_change_for_many_watchers(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let mut connections = Vec::new();
    for _ in 0..4 {
        let endpoint = Channel::from_shared(format!("http://{}", app.addr)).unwrap();
        connections.push(endpoint.connect().await.expect("connect"));
    }
    let opening = (0..500).map(|i| {
        let mut client = CheckoutServiceClient::new(connections[i % 4].clone());
        let req = keyed(
            pb::WatchSessionRequest {
                session_id: s.id.clone(),
            },
            &c.shop.test_key,
            "test",
        );
        async move {
            let mut stream = client.watch_session(req).await.expect("watch").into_inner();
            next(&mut stream).await;
            stream
        }
    });
    let streams = join_all(opening).await;
    let before = value(&scrape(app.metrics_addr).await, READS);
    let done = complete(&app, &s.id, "pay").await.unwrap();
    let endings = join_all(streams.into_iter().map(|mut stream| async move {
        let event = next(&mut stream).await;
        assert!(ended(&mut stream).await, "the stream ends after the ending");
        event
    }))
    .await;
    for event in endings {
        assert_eq!(
            (event.previous_status, event.session.unwrap()),
            (pb::SessionStatus::Open as i32, done.clone())
        );
    }
    let reads = value(&scrape(app.metrics_addr).await, READS) - before;
    // On Postgres this replica hears of its own change twice: from the handler, and back
    // through the listener (the trigger's NOTIFY). Each may cost a read unless they
    // coalesce; per watcher, none.
    let most = match ctx.backend {
        Backend::Sqlite => 1.0,
        Backend::Postgres => 2.0,
    };
    assert!(
        (1.0..=most).contains(&reads),
        "{reads} reads for one change"
    );
}

/// Runs `during` while holding the only connection of `db`'s pool.
async fn holding_the_only_connection<F: Future>(db: &Db, during: F) -> F::Output {
    match db {
        Db::Sqlite { pool, .. } => {
            let _held = pool.get().await.expect("connection");
            during.await
        }
        Db::Postgres { pool } => {
            let _held = pool.get().await.expect("connection");
            during.await
        }
    }
}

/// A burst of notifications while the hub's read is in flight costs one more read, not one
/// each, and is not lost: the final state is published. This drives a hub directly — no API
/// call changes one session more than once, and nothing outside a server can keep its read
/// in flight — over the test database with a pool of one connection that the test holds:
/// the hub's read then waits for it, in flight for as long as the test likes.
pub async fn burst_during_a_read_is_coalesced_not_lost(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let options = PoolOptions {
        max_size: 1,
        connect_timeout: Duration::from_secs(60),
    };
    let db = Db::connect(&app.db.url, &options).await.expect("pool");
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(db.clone(), metrics.clone());
    let mut subscription = hub.subscribe(&s.id);
    holding_the_only_connection(&db, async {
        hub.notify(&s.id);
        while metrics.watch_session_reads() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The read has started and waits for the connection. Now the change, and a burst.
        complete(&app, &s.id, "pay").await.unwrap();
        for _ in 0..100 {
            hub.notify(&s.id);
        }
    })
    .await;
    let published = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let snapshot = subscription.changed().await.expect("the hub is not closed");
            if snapshot.status().unwrap() == Some(Status::Completed) {
                break snapshot;
            }
        }
    })
    .await
    .expect("the final state is published");
    assert!(published
        .stored
        .as_ref()
        .unwrap()
        .session
        .order_id
        .is_some());
    // The read in flight, then exactly one more for the whole burst.
    let settled = tokio::time::timeout(Duration::from_secs(10), async {
        while metrics.watch_session_reads() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "the burst was not read back");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metrics.watch_session_reads(), 2);
}

/// Expiry reaches watchers: through ExpireSession (a notification), and by the clock alone
/// while the database refuses writes, so the sweeper can neither expire the session nor
/// tell anyone. The minimum TTL is 300 s, so the session's expiry is moved to 3 s from now
/// before anyone watches it, as the passing of time would have done.
pub async fn expiry_reaches_watchers_without_a_notification(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let key = &c.shop.test_key;
    // Explicit: ExpireSession.
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let mut streams = vec![watch(&app, key, &s.id).await, watch(&app, key, &s.id).await];
    for stream in &mut streams {
        next(stream).await;
    }
    let req = keyed(
        pb::ExpireSessionRequest {
            session_id: s.id.clone(),
        },
        key,
        "test",
    );
    let expired = app
        .checkout()
        .expire_session(req)
        .await
        .unwrap()
        .into_inner();
    for stream in &mut streams {
        let event = next(stream).await;
        assert_eq!(
            (event.previous_status, event.session.unwrap()),
            (pb::SessionStatus::Open as i32, expired.clone())
        );
        assert!(ended(stream).await);
    }
    // By the clock.
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let soon = Timestamp::now().0 + 3_000_000;
    app.sql(&format!(
        "UPDATE sessions SET expires_at = {soon} WHERE id = '{}'",
        s.id
    ))
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = watch(&app, key, &s.id).await;
        let first = next(&mut stream).await.session.unwrap().status;
        assert_eq!(first, pb::SessionStatus::Open as i32, "opened in time");
        streams.push(stream);
    }
    let swept = "checkout_session_transitions_total{status=\"expired\"}";
    let swept_before = value(&scrape(app.metrics_addr).await, swept);
    let block = app.block_writes().await;
    for stream in &mut streams {
        let event = next(stream).await;
        assert_eq!(event.previous_status, pb::SessionStatus::Open as i32);
        assert_eq!(
            event.session.unwrap().status,
            pb::SessionStatus::Expired as i32
        );
        assert!(event.occurred_at.unwrap().seconds >= soon / 1_000_000);
        assert!(ended(stream).await);
    }
    let swept_now = value(&scrape(app.metrics_addr).await, swept);
    assert_eq!(
        swept_now, swept_before,
        "the sweeper could not have written it"
    );
    block.release().await;
}
