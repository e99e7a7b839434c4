//! The event feed (SPEC §11): one event per session transition, per store and environment,
//! read by ListEvents and WatchEvents with opaque cursors.
use crate::{
    fixtures::{catalog, created, line, order, Catalog},
    helpers::{assert_status, keyed, slugged, Ctx, TestApp},
    lifecycle::{cancel, complete, expire},
};
use checkout::pb::{self, EventType};
use std::time::{Duration, Instant};
use tonic::{codec::Streaming, Code};
use tonic_types::StatusExt;

/// One page of the catalog store's test feed.
pub async fn list(
    app: &TestApp,
    key: &str,
    env: &str,
    after: &str,
    size: i32,
    types: &[EventType],
) -> Result<pb::ListEventsResponse, tonic::Status> {
    let req = pb::ListEventsRequest {
        after_cursor: after.into(),
        page_size: size,
        types: types.iter().map(|t| *t as i32).collect(),
    };
    app.checkout()
        .list_events(keyed(req, key, env))
        .await
        .map(tonic::Response::into_inner)
}

/// Every event after `after`, page by page.
pub async fn list_all(app: &TestApp, key: &str, after: &str) -> Vec<pb::Event> {
    let mut out = Vec::new();
    let mut cursor = after.to_owned();
    loop {
        let page = list(app, key, "test", &cursor, 7, &[]).await.expect("list");
        if page.events.is_empty() {
            assert_eq!(
                page.next_cursor, cursor,
                "nothing new: the same cursor back"
            );
            return out;
        }
        assert_eq!(page.next_cursor, page.events.last().unwrap().cursor);
        cursor = page.next_cursor;
        out.extend(page.events);
    }
}

pub async fn watch(
    app: &TestApp,
    key: &str,
    after: &str,
    types: &[EventType],
) -> Result<Streaming<pb::Event>, tonic::Status> {
    let req = pb::WatchEventsRequest {
        after_cursor: after.into(),
        types: types.iter().map(|t| *t as i32).collect(),
    };
    app.checkout()
        .watch_events(keyed(req, key, "test"))
        .await
        .map(tonic::Response::into_inner)
}

/// The next event of a stream, within a generous deadline.
pub async fn next_event(stream: &mut Streaming<pb::Event>) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .expect("no stream error")
        .expect("the stream is still open")
}

fn kinds(events: &[pb::Event]) -> Vec<(EventType, String)> {
    events
        .iter()
        .map(|e| (e.r#type(), e.session_id.clone()))
        .collect()
}

fn paid(c: &Catalog) -> pb::CreateSessionRequest {
    order(vec![line(&c.widget, 1)], "USD")
}

/// Creation, payment, cancel, ExpireSession, the sweeper's expiry and a free order: each
/// transition is exactly one event, in order, with the session as of that event.
pub async fn every_transition_is_one_event(ctx: Ctx) {
    use EventType::*;
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let key = &c.shop.test_key;
    let paid_s = created(&app, &c, paid(&c)).await;
    complete(&app, &paid_s.id, "pay-1").await.unwrap();
    let cancelled = created(&app, &c, paid(&c)).await;
    cancel(&app, &cancelled.id).await.unwrap();
    let expired = created(&app, &c, paid(&c)).await;
    expire(&app, &c, &expired.id).await.unwrap();
    let swept = created(&app, &c, paid(&c)).await;
    let free = created(&app, &c, order(vec![line(&c.free, 1)], "USD")).await;
    // Its expiry, just after its creation, is past: the sweeper expires it.
    app.sql(&format!(
        "UPDATE sessions SET expires_at = created_at + 1 WHERE id = '{}'",
        swept.id
    ))
    .await;
    // The sweeper's expiry is the last transition to commit; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = list_all(&app, key, "").await;
        if events
            .iter()
            .any(|e| e.r#type() == SessionExpired && e.session_id == swept.id)
        {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper's expiry is in the feed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected = vec![
        (SessionCreated, paid_s.id.clone()),
        (SessionCompleted, paid_s.id.clone()),
        (SessionCreated, cancelled.id.clone()),
        (SessionCancelled, cancelled.id.clone()),
        (SessionCreated, expired.id.clone()),
        (SessionExpired, expired.id.clone()),
        (SessionCreated, swept.id.clone()),
        (SessionCreated, free.id.clone()),
        (SessionCompleted, free.id.clone()),
        (SessionExpired, swept.id.clone()),
    ];
    assert_eq!(kinds(&events), expected);
    // The session as of each event.
    let statuses: Vec<pb::SessionStatus> = events
        .iter()
        .map(|e| e.session.as_ref().unwrap().status())
        .collect();
    use pb::SessionStatus as S;
    assert_eq!(
        statuses,
        [
            S::Open,
            S::Completed,
            S::Open,
            S::Cancelled,
            S::Open,
            S::Expired,
            S::Open,
            S::Open,
            S::Completed,
            S::Expired
        ]
    );
    let orders: Vec<bool> = events
        .iter()
        .map(|e| !e.session.as_ref().unwrap().order_id.is_empty())
        .collect();
    assert_eq!(
        orders,
        [false, true, false, false, false, false, false, false, true, false]
    );
    for e in &events {
        assert_eq!(e.session.as_ref().unwrap().id, e.session_id);
        assert!(e.occurred_at.is_some());
    }
    let cursors: std::collections::HashSet<&str> =
        events.iter().map(|e| e.cursor.as_str()).collect();
    assert_eq!(cursors.len(), events.len(), "one cursor per event");
}

/// A store sees its own environment's events only; another store's or environment's cursor
/// is `Invalid cursor`, as is a malformed one; a store slug may not read the feed.
pub async fn feeds_are_isolated(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let a = catalog(&app).await;
    let b = catalog(&app).await;
    let sa = created(&app, &a, paid(&a)).await;
    let sb = created(&app, &b, paid(&b)).await;
    let prod = pb::CreateSessionRequest {
        ..order(vec![line(&a.widget, 1)], "USD")
    };
    let prod_s = app
        .checkout()
        .create_session(keyed(prod, &a.shop.prod_key, "prod"))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let ea = list_all(&app, &a.shop.test_key, "").await;
    let eb = list_all(&app, &b.shop.test_key, "").await;
    assert_eq!(kinds(&ea), [(EventType::SessionCreated, sa.id.clone())]);
    assert_eq!(kinds(&eb), [(EventType::SessionCreated, sb.id.clone())]);
    let ep = list(&app, &a.shop.prod_key, "prod", "", 0, &[])
        .await
        .unwrap();
    assert_eq!(
        kinds(&ep.events),
        [(EventType::SessionCreated, prod_s.id.clone())]
    );

    let other_store = &eb[0].cursor;
    let other_env = &ep.events[0].cursor;
    for bad in [
        other_store.as_str(),
        other_env.as_str(),
        "not-a-cursor",
        "ZXYxOng6dGVzdDox",
    ] {
        let r = list(&app, &a.shop.test_key, "test", bad, 0, &[]).await;
        assert_status(r, Code::InvalidArgument, "Invalid cursor");
        let r = watch(&app, &a.shop.test_key, bad, &[]).await;
        assert_status(r, Code::InvalidArgument, "Invalid cursor");
    }
    // The slug is public: it may not read a store's feed.
    let req = slugged(pb::ListEventsRequest::default(), &a.shop.slug, "test");
    let r = app.checkout().list_events(req).await;
    assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
    let req = slugged(pb::WatchEventsRequest::default(), &a.shop.slug, "test");
    let r = app.checkout().watch_events(req).await;
    assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
}

/// Type filters, page sizes and paging; `next_cursor` is the last event's or the request's.
pub async fn list_filters_and_pages(ctx: Ctx) {
    use EventType::*;
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let key = &c.shop.test_key;
    let mut ids = Vec::new();
    for i in 0..5 {
        let s = created(&app, &c, paid(&c)).await;
        if i % 2 == 0 {
            cancel(&app, &s.id).await.unwrap();
        }
        ids.push(s.id);
    }
    let all = list(&app, key, "test", "", 0, &[]).await.unwrap();
    assert_eq!(
        all.events.len(),
        8,
        "5 created, 3 cancelled: the default page holds all"
    );
    assert_eq!(all.next_cursor, all.events[7].cursor);
    let cancelled = list(&app, key, "test", "", 0, &[SessionCancelled])
        .await
        .unwrap();
    let want: Vec<_> = [0, 2, 4]
        .iter()
        .map(|i| (SessionCancelled, ids[*i].clone()))
        .collect();
    assert_eq!(kinds(&cancelled.events), want);
    let both = list(
        &app,
        key,
        "test",
        "",
        0,
        &[SessionCancelled, SessionCreated],
    )
    .await
    .unwrap();
    assert_eq!(kinds(&both.events), kinds(&all.events));
    // Pages of 3, then nothing new: the request's cursor comes back.
    let p1 = list(&app, key, "test", "", 3, &[]).await.unwrap();
    let p2 = list(&app, key, "test", &p1.next_cursor, 3, &[])
        .await
        .unwrap();
    let p3 = list(&app, key, "test", &p2.next_cursor, 3, &[])
        .await
        .unwrap();
    let paged: Vec<_> = [p1.events, p2.events, p3.events.clone()].concat();
    assert_eq!(kinds(&paged), kinds(&all.events));
    assert_eq!(p3.events.len(), 2);
    let p4 = list(&app, key, "test", &p3.next_cursor, 3, &[])
        .await
        .unwrap();
    assert!(p4.events.is_empty());
    assert_eq!(p4.next_cursor, p3.next_cursor);
    // A filter past the last match answers the request's cursor too.
    let none = list(&app, key, "test", &all.next_cursor, 0, &[SessionCompleted])
        .await
        .unwrap();
    assert_eq!(
        (none.events.len(), none.next_cursor.as_str()),
        (0, all.next_cursor.as_str())
    );

    let r = list(&app, key, "test", "", 1001, &[]).await;
    assert_status(r, Code::InvalidArgument, "page_size must be 0 to 1000");
    let r = list(&app, key, "test", "", -1, &[]).await;
    assert_status(r, Code::InvalidArgument, "page_size must be 0 to 1000");
    let one = list(&app, key, "test", "", 1, &[]).await.unwrap();
    assert_eq!(one.events.len(), 1);
    let max = list(&app, key, "test", "", 1000, &[]).await.unwrap();
    assert_eq!(max.events.len(), 8);
    let r = list(&app, key, "test", "", 0, &[Unspecified]).await;
    assert_status(r, Code::InvalidArgument, "Unknown event type 0");
}

/// Retention: the sweeper purges events past it, and a cursor from before the purge is
/// FAILED_PRECONDITION `Cursor expired` with ErrorInfo `CURSOR_EXPIRED`.
pub async fn cursor_expires_with_retention(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let key = &c.shop.test_key;
    let old = created(&app, &c, paid(&c)).await;
    let old_cancel = cancel(&app, &old.id).await.unwrap();
    let before = list_all(&app, key, "").await;
    assert_eq!(before.len(), 2);
    let kept = created(&app, &c, paid(&c)).await;
    // As if 31 days had passed for the first two events (the default retention is 30).
    let month = 31 * 86_400 * 1_000_000_i64;
    app.sql(&format!(
        "UPDATE feed_events SET occurred_at = occurred_at - {month} WHERE session_id = '{}'",
        old_cancel.id
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events = list_all(&app, key, "").await;
        if events.len() == 1 {
            assert_eq!(
                kinds(&events),
                [(EventType::SessionCreated, kept.id.clone())]
            );
            break;
        }
        assert!(Instant::now() < deadline, "the sweeper purges old events");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = list(&app, key, "test", &before[0].cursor, 0, &[]).await;
    let status = assert_status(r, Code::FailedPrecondition, "Cursor expired");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    assert_eq!(info.reason, "CURSOR_EXPIRED");
    let r = watch(&app, key, &before[0].cursor, &[]).await;
    assert_status(r, Code::FailedPrecondition, "Cursor expired");
    // The cursor of the last purged event lost nothing: it still reads on.
    let rest = list_all(&app, key, &before[1].cursor).await;
    assert_eq!(kinds(&rest), [(EventType::SessionCreated, kept.id.clone())]);
}
