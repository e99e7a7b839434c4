//! How sessions end: CompleteSession, CancelSession, ExpireSession and the sweeper, each
//! exactly once, with coupon reservations released; and ListSessions.
use crate::{
    fixtures::{catalog, create, created, get_session, line, order, single_use_coupon, Catalog},
    helpers::{assert_status, keyed, Ctx, TestApp},
};
use checkout::pb::{self, CreateSessionRequest as Req};
use std::time::Duration;
use tonic::{Code, Response, Status};

pub async fn complete(app: &TestApp, id: &str, reference: &str) -> Result<pb::Session, Status> {
    let req = pb::CompleteSessionRequest {
        session_id: id.into(),
        payment_reference: reference.into(),
    };
    app.hosted()
        .complete_session(app.platform(req))
        .await
        .map(Response::into_inner)
}

pub async fn cancel(app: &TestApp, id: &str) -> Result<pb::Session, Status> {
    let req = pb::CancelSessionRequest {
        session_id: id.into(),
    };
    app.hosted()
        .cancel_session(app.platform(req))
        .await
        .map(Response::into_inner)
}

pub async fn expire(app: &TestApp, c: &Catalog, id: &str) -> Result<pb::Session, Status> {
    let req = keyed(
        pb::ExpireSessionRequest {
            session_id: id.into(),
        },
        &c.shop.test_key,
        "test",
    );
    app.checkout()
        .expire_session(req)
        .await
        .map(Response::into_inner)
}

fn paid(c: &Catalog) -> Req {
    order(vec![line(&c.widget, 1)], "USD")
}

pub async fn complete_creates_one_order(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let url = "https://shop.example.com/done?o={ORDER_ID}";
    let s = created(
        &app,
        &c,
        Req {
            success_url: url.into(),
            ..paid(&c)
        },
    )
    .await;
    assert_eq!(s.success_url, "https://shop.example.com/done?o={ORDER_ID}");
    let done = complete(&app, &s.id, "pay_1").await.unwrap();
    assert_eq!(done.status, pb::SessionStatus::Completed as i32);
    assert!(done.order_id.starts_with("ord_") && done.completed_at.is_some());
    assert_eq!(
        done.success_url,
        format!("https://shop.example.com/done?o={}", done.order_id)
    );
    assert_eq!(
        get_session(&app, &c.shop.test_key, "test", &s.id)
            .await
            .unwrap(),
        done
    );
    // The same payment again: the same result. Another payment: refused.
    assert_eq!(complete(&app, &s.id, "pay_1").await.unwrap(), done);
    let r = complete(&app, &s.id, "pay_2").await;
    assert_status(
        r,
        Code::FailedPrecondition,
        "Session is already completed with a different payment_reference",
    );
    assert_status(
        cancel(&app, &s.id).await,
        Code::FailedPrecondition,
        "Session is already completed",
    );
    assert_status(
        expire(&app, &c, &s.id).await,
        Code::FailedPrecondition,
        "Session is already completed",
    );
    assert_status(
        complete(&app, &s.id, " ").await,
        Code::InvalidArgument,
        "payment_reference is required",
    );
    let unknown = checkout::domain::ids::SessionId::generate().to_string();
    assert_status(
        complete(&app, &unknown, "pay_3").await,
        Code::NotFound,
        "Session not found",
    );
}

pub async fn cancel_and_expire_release_coupons(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    single_use_coupon(&app, &c).await;
    let with_coupon = || Req {
        coupon_code: "ONCE".into(),
        ..paid(&c)
    };
    let s1 = created(&app, &c, with_coupon()).await;
    assert_status(
        create(&app, &c, with_coupon()).await,
        Code::InvalidArgument,
        "couponCode: ONCE (exhausted)",
    );
    let cancelled = cancel(&app, &s1.id).await.unwrap();
    assert_eq!(cancelled.status, pb::SessionStatus::Cancelled as i32);
    assert_eq!(
        cancel(&app, &s1.id).await.unwrap(),
        cancelled,
        "cancelling twice is harmless"
    );
    assert_status(
        complete(&app, &s1.id, "pay").await,
        Code::FailedPrecondition,
        "Session is cancelled",
    );
    // The reservation came back: the coupon works again, and again after an expiry.
    let s2 = created(&app, &c, with_coupon()).await;
    let expired = expire(&app, &c, &s2.id).await.unwrap();
    assert_eq!(expired.status, pb::SessionStatus::Expired as i32);
    assert_status(
        expire(&app, &c, &s2.id).await,
        Code::FailedPrecondition,
        "Session has expired",
    );
    assert_status(
        complete(&app, &s2.id, "pay").await,
        Code::FailedPrecondition,
        "Session has expired",
    );
    let s3 = created(&app, &c, with_coupon()).await;
    // A completed session keeps its redemption.
    complete(&app, &s3.id, "pay").await.unwrap();
    assert_status(
        create(&app, &c, with_coupon()).await,
        Code::InvalidArgument,
        "couponCode: ONCE (exhausted)",
    );
    // Past its expiry (before any sweep), a session can be neither paid nor cancelled.
    let late = created(&app, &c, paid(&c)).await;
    app.backdate_expiry(&late.id).await;
    assert_status(
        complete(&app, &late.id, "pay").await,
        Code::FailedPrecondition,
        "Session has expired",
    );
    assert_status(
        cancel(&app, &late.id).await,
        Code::FailedPrecondition,
        "Session has expired",
    );
    assert_status(
        expire(&app, &c, &late.id).await,
        Code::FailedPrecondition,
        "Session has expired",
    );
    // Within the last seconds before its expiry a session can no longer be paid or
    // cancelled either: nobody may be told EXPIRED about a session that then completes.
    let closing = created(&app, &c, paid(&c)).await;
    let soon = checkout::domain::time::Timestamp::now().0 + 1_000_000;
    app.sql(&format!(
        "UPDATE sessions SET expires_at = {soon} WHERE id = '{}'",
        closing.id
    ))
    .await;
    assert_status(
        complete(&app, &closing.id, "pay").await,
        Code::FailedPrecondition,
        "Session has expired",
    );
    assert_status(
        cancel(&app, &closing.id).await,
        Code::FailedPrecondition,
        "Session has expired",
    );
    // Another store's key cannot expire it.
    let other = crate::fixtures::shop(&app).await;
    let req = keyed(
        pb::ExpireSessionRequest {
            session_id: s3.id.clone(),
        },
        &other.test_key,
        "test",
    );
    assert_status(
        app.checkout().expire_session(req).await,
        Code::NotFound,
        "Session not found",
    );
}

/// 20 concurrent payments of one session: one order. With one payment reference retried
/// 20 times at once: every reply is that one order.
pub async fn concurrent_completes_make_one_order(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    for same_reference in [false, true] {
        let s = created(&app, &c, paid(&c)).await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let mut client = app.hosted();
                let reference = if same_reference {
                    "pay_same".to_string()
                } else {
                    format!("pay_{i}")
                };
                let req = app.platform(pb::CompleteSessionRequest {
                    session_id: s.id.clone(),
                    payment_reference: reference,
                });
                tokio::spawn(
                    async move { client.complete_session(req).await.map(Response::into_inner) },
                )
            })
            .collect();
        let mut orders = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(done) => orders.push(done.order_id),
                Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}"),
            }
        }
        let succeeded = orders.len();
        assert_eq!(
            succeeded,
            if same_reference { 20 } else { 1 },
            "who succeeds"
        );
        orders.dedup();
        assert_eq!(orders.len(), 1, "exactly one order: {orders:?}");
        let final_state = get_session(&app, &c.shop.test_key, "test", &s.id)
            .await
            .unwrap();
        assert_eq!(final_state.order_id, orders[0]);
    }
}

/// Payment, cancel and expiry racing on the same sessions: exactly one wins each time, and
/// a watcher sees exactly that ending.
pub async fn complete_cancel_expire_race(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    for round in 0..8 {
        let s = created(&app, &c, paid(&c)).await;
        let mut watch = crate::watch::watch(&app, &c.shop.test_key, &s.id).await;
        assert_eq!(
            crate::watch::next(&mut watch).await.session.unwrap().status,
            pb::SessionStatus::Open as i32
        );
        let (a, b, e) = tokio::join!(
            complete(&app, &s.id, "pay"),
            cancel(&app, &s.id),
            expire(&app, &c, &s.id)
        );
        let winners: Vec<i32> = [a, b, e]
            .into_iter()
            .filter_map(Result::ok)
            .map(|s| s.status)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one transition wins"
        );
        let event = crate::watch::next(&mut watch).await;
        assert_eq!(event.session.unwrap().status, winners[0]);
        assert_eq!(event.previous_status, pb::SessionStatus::Open as i32);
        assert!(
            crate::watch::ended(&mut watch).await,
            "the stream ends after the terminal event"
        );
    }
}

/// The sweeper expires an open session within 1 s of its expiry, tells watchers, and gives
/// the coupon back.
pub async fn sweeper_expires_within_a_second(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    single_use_coupon(&app, &c).await;
    let s = created(
        &app,
        &c,
        Req {
            coupon_code: "ONCE".into(),
            ..paid(&c)
        },
    )
    .await;
    let mut watch = crate::watch::watch(&app, &c.shop.test_key, &s.id).await;
    crate::watch::next(&mut watch).await;
    let soon = checkout::domain::time::Timestamp::now().0 + 300_000;
    app.sql(&format!(
        "UPDATE sessions SET expires_at = {soon} WHERE id = '{}'",
        s.id
    ))
    .await;
    let started = std::time::Instant::now();
    let event = crate::watch::next(&mut watch).await;
    assert_eq!(
        event.session.unwrap().status,
        pb::SessionStatus::Expired as i32
    );
    // The coupon is free again once the sweeper has really expired it (within 1 s).
    let again = loop {
        match create(
            &app,
            &c,
            Req {
                coupon_code: "ONCE".into(),
                ..paid(&c)
            },
        )
        .await
        {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_millis(1300) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("coupon not released within 1 s of expiry: {e:?}"),
        }
    };
    assert_eq!(again.into_inner().session.unwrap().amount_discount, 200);
    assert_status(
        expire(&app, &c, &s.id).await,
        Code::FailedPrecondition,
        "Session has expired",
    );
}

pub async fn list_sessions_filters_and_pages(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let customer = if i % 2 == 0 { "alice" } else { "bob" };
        ids.push(
            created(
                &app,
                &c,
                Req {
                    customer_id: customer.into(),
                    ..paid(&c)
                },
            )
            .await
            .id,
        );
    }
    let free = created(
        &app,
        &c,
        Req {
            customer_id: "alice".into(),
            ..order(vec![line(&c.free, 1)], "USD")
        },
    )
    .await;
    let list = |req: pb::ListSessionsRequest| {
        let mut client = app.checkout();
        let req = keyed(req, &c.shop.test_key, "test");
        async move { client.list_sessions(req).await.map(Response::into_inner) }
    };
    // Newest first, in pages; sessions created while paging do not disturb the walk.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(pb::ListSessionsRequest {
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(page.sessions.len() <= 2);
        seen.extend(page.sessions.into_iter().map(|s| s.id));
        created(&app, &c, paid(&c)).await;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = ids.iter().cloned().chain([free.id.clone()]).rev().collect();
    assert_eq!(
        seen, expected,
        "newest first; every session that existed when paging began, once"
    );
    let completed = list(pb::ListSessionsRequest {
        status: pb::SessionStatus::Completed as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        completed
            .sessions
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        [free.id.as_str()]
    );
    let alice = list(pb::ListSessionsRequest {
        customer_id: "alice".into(),
        status: pb::SessionStatus::Open as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(alice.sessions.len(), 3);
    assert!(alice
        .sessions
        .iter()
        .all(|s| s.customer_id == "alice" && s.status == pb::SessionStatus::Open as i32));
    // Expired by time counts as EXPIRED, not OPEN, before any sweep.
    app.backdate_expiry(&ids[0]).await;
    let expired = list(pb::ListSessionsRequest {
        status: pb::SessionStatus::Expired as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(expired.sessions.len(), 1);
    let first_created = get_session(&app, &c.shop.test_key, "test", &ids[0])
        .await
        .unwrap()
        .created_at;
    let before = list(pb::ListSessionsRequest {
        created_before: first_created,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(before.sessions.is_empty());
    let page = list(pb::ListSessionsRequest {
        page_size: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let r = list(pb::ListSessionsRequest {
        page_size: 1,
        page_token: page.next_page_token,
        customer_id: "bob".into(),
        ..Default::default()
    })
    .await;
    assert_status(
        r,
        Code::InvalidArgument,
        "page_token was made for other filters; repeat the request's filters",
    );
    // Another store sees none of them.
    let other = crate::fixtures::shop(&app).await;
    let req = keyed(pb::ListSessionsRequest::default(), &other.test_key, "test");
    assert!(app
        .checkout()
        .list_sessions(req)
        .await
        .unwrap()
        .into_inner()
        .sessions
        .is_empty());
}
