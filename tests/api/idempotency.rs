//! Idempotency (SPEC section 6), the coupon race, and tenancy — with real concurrency.
use crate::{
    fixtures::{catalog, coupon, line, order, shop, Catalog},
    helpers::{assert_status, keyed, with_md, Ctx, TestApp},
};
use checkout::pb::{self, create_coupon_request::Discount, CreateSessionRequest as Req};
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

fn with_key(req: Req, api_key: &str, env: &str, idem: &str) -> Request<Req> {
    with_md(
        req,
        &[
            ("authorization", &format!("Bearer {api_key}")),
            ("x-context-environment", env),
            ("idempotency-key", idem),
        ],
    )
}

async fn send(app: &TestApp, r: Request<Req>) -> Result<pb::CreateSessionResponse, Status> {
    app.checkout()
        .create_session(r)
        .await
        .map(Response::into_inner)
}

fn key_of(c: &Catalog) -> &str {
    &c.shop.test_key
}

pub async fn same_key_same_session(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let req = || order(vec![line(&c.widget, 1)], "USD");
    let first = send(&app, with_key(req(), key_of(&c), "test", "order-1"))
        .await
        .unwrap();
    let first_id = first.session.clone().unwrap().id;
    let again = send(&app, with_key(req(), key_of(&c), "test", "order-1"))
        .await
        .unwrap();
    assert_eq!(first, again, "a retry gets the identical reply");
    // Another body under the same key is refused.
    let other = order(vec![line(&c.widget, 2)], "USD");
    assert_status(
        send(&app, with_key(other, key_of(&c), "test", "order-1")).await,
        Code::InvalidArgument,
        "Idempotency-Key was already used with different request parameters",
    );
    // Keys are scoped per environment and per store.
    let prod = send(&app, with_key(req(), &c.shop.prod_key, "prod", "order-1"))
        .await
        .unwrap();
    assert_ne!(prod.session.unwrap().id, first_id);
    let other_shop = crate::fixtures::catalog(&app).await;
    let theirs = send(
        &app,
        with_key(
            order(vec![line(&other_shop.widget, 1)], "USD"),
            key_of(&other_shop),
            "test",
            "order-1",
        ),
    )
    .await
    .unwrap();
    assert_ne!(theirs.session.unwrap().id, first_id);
    // A store slug is public, so its keys live apart: a browser cannot replay or squat the
    // backend's key.
    let slug = with_md(
        req(),
        &[
            ("x-store-slug", &c.shop.slug),
            ("x-context-environment", "test"),
            ("idempotency-key", "order-1"),
        ],
    );
    let from_browser = send(&app, slug).await.unwrap();
    assert_ne!(from_browser.session.unwrap().id, first_id);
    // Without a key every request is a new session.
    let a = send(&app, keyed(req(), key_of(&c), "test")).await.unwrap();
    let b = send(&app, keyed(req(), key_of(&c), "test")).await.unwrap();
    assert_ne!(a.session.unwrap().id, b.session.unwrap().id);
    let bad = with_key(req(), key_of(&c), "test", &"k".repeat(256));
    assert_eq!(
        send(&app, bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[track_caller]
fn assert_used_by(status: Status, word: &str, enum_name: &str, session_id: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.message(),
        format!("Idempotency-Key already used by {word} session {session_id}")
    );
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("google.rpc.ErrorInfo");
    assert_eq!(
        info.metadata.get("session_id").map(String::as_str),
        Some(session_id)
    );
    assert_eq!(
        info.metadata.get("status").map(String::as_str),
        Some(enum_name)
    );
}

pub async fn finished_session_refuses_its_key(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    // A free order is COMPLETED at once.
    let free = || order(vec![line(&c.free, 1)], "USD");
    let done = send(&app, with_key(free(), key_of(&c), "test", "free-1"))
        .await
        .unwrap()
        .session
        .unwrap();
    let status = send(&app, with_key(free(), key_of(&c), "test", "free-1"))
        .await
        .unwrap_err();
    assert_used_by(status, "Completed", "SESSION_STATUS_COMPLETED", &done.id);
    // An open session past its expiry is EXPIRED for this purpose too.
    let paid = || order(vec![line(&c.widget, 1)], "USD");
    let open = send(&app, with_key(paid(), key_of(&c), "test", "paid-1"))
        .await
        .unwrap()
        .session
        .unwrap();
    app.backdate_expiry(&open.id).await;
    let status = send(&app, with_key(paid(), key_of(&c), "test", "paid-1"))
        .await
        .unwrap_err();
    assert_used_by(status, "Expired", "SESSION_STATUS_EXPIRED", &open.id);
    // A cancelled one (set as CancelSession would leave it).
    let other = send(&app, with_key(paid(), key_of(&c), "test", "paid-2"))
        .await
        .unwrap()
        .session
        .unwrap();
    app.sql(&format!(
        "UPDATE sessions SET status = 'cancelled' WHERE id = '{}'",
        other.id
    ))
    .await;
    let status = send(&app, with_key(paid(), key_of(&c), "test", "paid-2"))
        .await
        .unwrap_err();
    assert_used_by(status, "Cancelled", "SESSION_STATUS_CANCELLED", &other.id);
}

/// 50 concurrent requests with one key: one session, every OK reply identical.
pub async fn concurrent_same_key_creates_one_session(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut client = app.checkout();
            let req = with_key(
                order(vec![line(&c.widget, 1)], "USD"),
                key_of(&c),
                "test",
                "race-1",
            );
            tokio::spawn(async move { client.create_session(req).await.map(Response::into_inner) })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(
            t.await
                .unwrap()
                .expect("every request with the key succeeds"),
        );
    }
    assert!(
        replies.windows(2).all(|w| w[0] == w[1]),
        "identical replies: one session"
    );
}

/// max_redemptions = 1 and 50 concurrent creates: exactly one gets the discount.
pub async fn coupon_race_never_over_redeems(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let once = pb::CreateCouponRequest {
        code: "ONCE".into(),
        discount: Some(Discount::PercentOff(50)),
        max_redemptions: 1,
        ..Default::default()
    };
    coupon(&app, &c.shop.store_id, once).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut client = app.checkout();
            let req = keyed(
                Req {
                    coupon_code: "ONCE".into(),
                    ..order(vec![line(&c.widget, 2)], "USD")
                },
                key_of(&c),
                "test",
            );
            tokio::spawn(async move { client.create_session(req).await.map(Response::into_inner) })
        })
        .collect();
    let (mut won, mut exhausted) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.session.unwrap().amount_discount, 1999);
                won += 1;
            }
            Err(s) => {
                assert_eq!(
                    (s.code(), s.message()),
                    (Code::InvalidArgument, "couponCode: ONCE (exhausted)")
                );
                exhausted += 1;
            }
        }
    }
    assert_eq!((won, exhausted), (1, 49));
}

pub async fn tenancy_and_environment_isolation(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let s = send(
        &app,
        keyed(order(vec![line(&c.widget, 1)], "USD"), key_of(&c), "test"),
    )
    .await
    .unwrap()
    .session
    .unwrap();
    let get = |key: &str, env: &str| {
        keyed(
            pb::GetSessionRequest {
                session_id: s.id.clone(),
            },
            key,
            env,
        )
    };
    assert_eq!(
        app.checkout()
            .get_session(get(key_of(&c), "test"))
            .await
            .unwrap()
            .into_inner()
            .id,
        s.id
    );
    let other = shop(&app).await;
    for (key, env) in [
        (other.test_key.as_str(), "test"),
        (c.shop.prod_key.as_str(), "prod"),
        (other.prod_key.as_str(), "prod"),
    ] {
        assert_status(
            app.checkout().get_session(get(key, env)).await,
            Code::NotFound,
            "Session not found",
        );
    }
    let slug = with_md(
        pb::GetSessionRequest {
            session_id: s.id.clone(),
        },
        &[
            ("x-store-slug", &other.slug),
            ("x-context-environment", "test"),
        ],
    );
    assert_status(
        app.checkout().get_session(slug).await,
        Code::NotFound,
        "Session not found",
    );
    // The same store's slug sees it, in its own environment only.
    let own = with_md(
        pb::GetSessionRequest {
            session_id: s.id.clone(),
        },
        &[
            ("x-store-slug", &c.shop.slug),
            ("x-context-environment", "prod"),
        ],
    );
    assert_status(
        app.checkout().get_session(own).await,
        Code::NotFound,
        "Session not found",
    );
}
