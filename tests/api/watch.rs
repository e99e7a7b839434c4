//! WatchSession: the current state first, one event per change, the end after a terminal
//! state — across replicas, through a dropped listener connection, and at shutdown.
use crate::{
    fixtures::{catalog, created, line, order},
    helpers::{keyed, slugged, Ctx, TestApp},
    lifecycle::complete,
    TestFn,
};
use checkout::pb;
use std::{collections::HashMap, time::Duration};
use tonic::{codec::Streaming, Code};

pub async fn watch(app: &TestApp, key: &str, id: &str) -> Streaming<pb::SessionEvent> {
    let req = keyed(
        pb::WatchSessionRequest {
            session_id: id.into(),
        },
        key,
        "test",
    );
    app.checkout()
        .watch_session(req)
        .await
        .expect("watch")
        .into_inner()
}

/// The next event, within 10 s.
pub async fn next(stream: &mut Streaming<pb::SessionEvent>) -> pb::SessionEvent {
    next_within(stream, Duration::from_secs(10)).await
}

/// The next event within `limit`. Cross-replica tests use far less than the hub's
/// safety resync (minutes), so they pass only if notifications really travel.
pub async fn next_within(
    stream: &mut Streaming<pb::SessionEvent>,
    limit: Duration,
) -> pb::SessionEvent {
    tokio::time::timeout(limit, stream.message())
        .await
        .expect("an event in time")
        .expect("no stream error")
        .expect("the stream is still open")
}

/// `n` watchers of one session, each past its first event (the current state).
pub async fn watchers(
    app: &TestApp,
    key: &str,
    id: &str,
    n: usize,
) -> Vec<Streaming<pb::SessionEvent>> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = watch(app, key, id).await;
        next(&mut stream).await;
        streams.push(stream);
    }
    streams
}

/// Whether the stream ended cleanly (within 5 s).
pub async fn ended(stream: &mut Streaming<pb::SessionEvent>) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.message()).await,
        Ok(Ok(None))
    )
}

pub async fn current_state_then_changes_then_end(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let s = created(
        &app,
        &c,
        pb::CreateSessionRequest {
            metadata: HashMap::from([("k".into(), "v".into())]),
            ..order(vec![line(&c.widget, 1)], "USD")
        },
    )
    .await;
    let mut stream = watch(&app, &c.shop.test_key, &s.id).await;
    let first = next(&mut stream).await;
    assert_eq!(first.previous_status, pb::SessionStatus::Unspecified as i32);
    assert_eq!(first.session.as_ref().unwrap(), &s);
    // A storefront watching the same session gets the reduced view.
    let req = slugged(
        pb::WatchSessionRequest {
            session_id: s.id.clone(),
        },
        &c.shop.slug,
        "test",
    );
    let mut storefront = app
        .checkout()
        .watch_session(req)
        .await
        .unwrap()
        .into_inner();
    assert!(next(&mut storefront)
        .await
        .session
        .unwrap()
        .metadata
        .is_empty());
    let done = complete(&app, &s.id, "pay").await.unwrap();
    let event = next(&mut stream).await;
    assert_eq!(
        (event.previous_status, event.session.as_ref().unwrap()),
        (pb::SessionStatus::Open as i32, &done)
    );
    assert_eq!(
        event.occurred_at.unwrap().seconds,
        done.completed_at.unwrap().seconds
    );
    assert!(ended(&mut stream).await);
    assert_eq!(
        next(&mut storefront).await.session.unwrap().status,
        pb::SessionStatus::Completed as i32
    );
    // A finished session: its state, then the end.
    let mut again = watch(&app, &c.shop.test_key, &s.id).await;
    assert_eq!(
        next(&mut again).await.session.unwrap().status,
        pb::SessionStatus::Completed as i32
    );
    assert!(ended(&mut again).await);
    // Unknown, and another store's: NOT_FOUND alike.
    let other = crate::fixtures::shop(&app).await;
    for (key, id) in [
        (&c.shop.test_key, "cs_unknown"),
        (&other.test_key, s.id.as_str()),
    ] {
        let req = keyed(
            pb::WatchSessionRequest {
                session_id: id.into(),
            },
            key,
            "test",
        );
        let status = app.checkout().watch_session(req).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, "Session not found")
        );
    }
}

/// 100 watchers on one replica all see the ending.
pub async fn many_watchers_see_the_end(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let streams = watchers(&app, &c.shop.test_key, &s.id, 100).await;
    complete(&app, &s.id, "pay").await.unwrap();
    for mut stream in streams {
        assert_eq!(
            next(&mut stream).await.session.unwrap().status,
            pb::SessionStatus::Completed as i32
        );
    }
}

/// Stopping the server with watch streams open finishes promptly, and the watchers are
/// told (UNAVAILABLE) so they can reconnect elsewhere.
pub async fn shutdown_ends_open_streams(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let streams = watchers(&app, &c.shop.test_key, &s.id, 10).await;
    app.stop(Duration::from_secs(3)).await;
    for mut stream in streams {
        let end = tokio::time::timeout(Duration::from_secs(3), stream.message())
            .await
            .expect("told promptly");
        assert_eq!(
            end.expect_err("an error, not an event").code(),
            Code::Unavailable
        );
    }
}

pub fn postgres_only() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "postgres_only::watch::change_on_another_replica_reaches_watchers",
            |ctx| Box::pin(change_on_another_replica_reaches_watchers(ctx)),
        ),
        (
            "postgres_only::watch::listener_reconnects_and_resyncs",
            |ctx| Box::pin(listener_reconnects_and_resyncs(ctx)),
        ),
        (
            "postgres_only::watch::endings_race_across_replicas",
            |ctx| Box::pin(endings_race_across_replicas(ctx)),
        ),
    ]
}

async fn replicas(ctx: &Ctx) -> (TestApp, TestApp) {
    let a = TestApp::spawn(ctx).await;
    let b = a.replica().await;
    (a, b)
}

/// Two replicas on one database: 100 watchers on A, the payment on B.
async fn change_on_another_replica_reaches_watchers(ctx: Ctx) {
    let (a, b) = replicas(&ctx).await;
    let c = catalog(&a).await;
    let s = created(&a, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let streams = watchers(&a, &c.shop.test_key, &s.id, 100).await;
    let done = complete(&b, &s.id, "pay").await.unwrap();
    for mut stream in streams {
        assert_eq!(
            next_within(&mut stream, Duration::from_secs(5))
                .await
                .session
                .unwrap(),
            done
        );
        assert!(ended(&mut stream).await);
    }
}

/// The listener's connection is killed; the change made meanwhile on the other replica is
/// still delivered (the listener reconnects and every watcher re-reads).
async fn listener_reconnects_and_resyncs(ctx: Ctx) {
    let (a, b) = replicas(&ctx).await;
    let c = catalog(&a).await;
    let s = created(&a, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let streams = watchers(&a, &c.shop.test_key, &s.id, 10).await;
    let db = a.db.url.rsplit('/').next().unwrap().to_owned();
    // Both replicas listen; kill both listeners, and fail if there was none to kill.
    a.sql(&format!(
        "DO $$ BEGIN IF (SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{db}' AND application_name = '{}') < 2 THEN RAISE EXCEPTION 'no listeners'; END IF; END $$",
        checkout::workers::LISTENER_APPLICATION_NAME
    ))
    .await;
    let done = complete(&b, &s.id, "pay").await.unwrap();
    for mut stream in streams {
        assert_eq!(
            next_within(&mut stream, Duration::from_secs(5))
                .await
                .session
                .unwrap(),
            done
        );
    }
}

/// Payments, cancels and expiries for one session, split over two replicas: one ending.
async fn endings_race_across_replicas(ctx: Ctx) {
    let (a, b) = replicas(&ctx).await;
    let c = catalog(&a).await;
    for _ in 0..5 {
        let s = created(&a, &c, order(vec![line(&c.widget, 1)], "USD")).await;
        let mut calls = Vec::new();
        for (i, app) in [&a, &b].into_iter().cycle().take(10).enumerate() {
            let id = s.id.clone();
            let (mut hosted, token) = (app.hosted(), app.platform_token.clone());
            calls.push(tokio::spawn(async move {
                let auth = [("authorization", format!("Bearer {token}"))];
                let md: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if i % 3 == 2 {
                    let req =
                        crate::helpers::with_md(pb::CancelSessionRequest { session_id: id }, &md);
                    hosted.cancel_session(req).await
                } else {
                    let req = pb::CompleteSessionRequest {
                        session_id: id,
                        payment_reference: format!("pay_{i}"),
                    };
                    hosted
                        .complete_session(crate::helpers::with_md(req, &md))
                        .await
                }
            }));
        }
        let mut endings = Vec::new();
        for call in calls {
            if let Ok(r) = call.await.unwrap() {
                let s = r.into_inner();
                endings.push((s.status, s.order_id));
            }
        }
        endings.dedup();
        assert_eq!(endings.len(), 1, "one ending, one order: {endings:?}");
    }
}
