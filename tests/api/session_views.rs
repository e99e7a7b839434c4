//! What callers see: the store slug's rights and reduced view, free orders, and the
//! GetSession view rules (placeholders, EXPIRED past expiry).
use crate::{
    fixtures::{catalog, coupon, create, created, get_session, line, order, seconds},
    helpers::{assert_status, slugged, Ctx, TestApp},
};
use checkout::pb::{self, create_coupon_request::Discount, CreateSessionRequest as Req};
use std::collections::HashMap;
use tonic::Code;

pub async fn store_slug_rights(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let mut l = line(&c.widget, 1);
    l.price_snapshot = Some(1);
    l.metadata = HashMap::from([("line".into(), "kept".into())]);
    let tampered = Req {
        expires_in_seconds: Some(300),
        metadata: HashMap::from([("k".into(), "v".into())]),
        order_merchant_external_id: Some("ext-1".into()),
        with_trial: true,
        ..order(vec![l], "USD")
    };
    // Silently ignored, not refused.
    let r = app
        .checkout()
        .create_session(slugged(tampered, &c.shop.slug, "test"))
        .await
        .unwrap()
        .into_inner();
    let s = r.session.unwrap();
    assert_eq!((s.amount_total, s.with_trial), (1999, false));
    assert_eq!(seconds(&s.expires_at) - seconds(&s.created_at), 2700);
    let full = get_session(&app, &c.shop.test_key, "test", &s.id)
        .await
        .unwrap();
    assert!(full.metadata.is_empty() && full.order_merchant_external_id.is_empty());
    // Inline products are refused for slugs.
    let inline = pb::LineItem {
        inline_product: Some(pb::InlineProduct {
            name: "X".into(),
            unit_amount: 1,
            ..Default::default()
        }),
        quantity: 1,
        ..Default::default()
    };
    let r = app
        .checkout()
        .create_session(slugged(order(vec![inline], "USD"), &c.shop.slug, "test"))
        .await;
    assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
    // A key-made session seen through the slug: no metadata, no external id.
    let keyed_req = Req {
        metadata: HashMap::from([("secret".into(), "x".into())]),
        order_merchant_external_id: Some("ext-2".into()),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let s = created(&app, &c, keyed_req).await;
    let req = slugged(
        pb::GetSessionRequest {
            session_id: s.id.clone(),
        },
        &c.shop.slug,
        "test",
    );
    let reduced = app.checkout().get_session(req).await.unwrap().into_inner();
    assert!(reduced.metadata.is_empty() && reduced.order_merchant_external_id.is_empty());
    assert!(reduced.lines.iter().all(|l| l.metadata.is_empty()));
    assert_eq!(reduced.amount_total, s.amount_total);
    let full = get_session(&app, &c.shop.test_key, "test", &s.id)
        .await
        .unwrap();
    assert_eq!(
        (
            full.metadata["secret"].as_str(),
            full.order_merchant_external_id.as_str()
        ),
        ("x", "ext-2")
    );
}

pub async fn free_orders(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let url = "https://shop.example.com/done?s={CHECKOUT_SESSION_ID}&o={ORDER_ID}";
    let r = create(
        &app,
        &c,
        Req {
            success_url: url.into(),
            ..order(vec![line(&c.free, 3)], "USD")
        },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(r.outcome, pb::Outcome::FreeOrder as i32);
    assert!(r.checkout_url.is_empty() && r.client_token.is_empty());
    let s = r.session.unwrap();
    assert_eq!(s.status, pb::SessionStatus::Completed as i32);
    assert!(s.order_id.starts_with("ord_") && s.completed_at.is_some());
    assert_eq!(
        s.success_url,
        format!("https://shop.example.com/done?s={}&o={}", s.id, s.order_id)
    );
    // A 100 % coupon makes a paid cart free.
    let all = pb::CreateCouponRequest {
        code: "ALL".into(),
        discount: Some(Discount::PercentOff(100)),
        ..Default::default()
    };
    coupon(&app, &c.shop.store_id, all).await;
    let r = create(
        &app,
        &c,
        Req {
            coupon_code: "ALL".into(),
            ..order(vec![line(&c.widget, 2)], "USD")
        },
    )
    .await
    .unwrap()
    .into_inner();
    let s = r.session.unwrap();
    assert_eq!(
        (
            r.outcome,
            s.amount_subtotal,
            s.amount_discount,
            s.amount_total
        ),
        (pb::Outcome::FreeOrder as i32, 3998, 3998, 0)
    );
    assert_eq!(
        get_session(&app, &c.shop.test_key, "test", &s.id)
            .await
            .unwrap()
            .order_id,
        s.order_id
    );
}

pub async fn get_session_views(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let url = "https://shop.example.com/done?s={CHECKOUT_SESSION_ID}&o={ORDER_ID}";
    let req = Req {
        success_url: url.into(),
        cancel_url: "https://shop.example.com/cancel/{CHECKOUT_SESSION_ID}".into(),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let s = created(&app, &c, req).await;
    // The session id is known at once; the order id only once there is an order.
    assert_eq!(
        s.success_url,
        format!("https://shop.example.com/done?s={}&o={{ORDER_ID}}", s.id)
    );
    assert_eq!(
        s.cancel_url,
        format!("https://shop.example.com/cancel/{}", s.id)
    );
    // Past expires_at the session reads as EXPIRED, before any sweeper ran.
    app.backdate_expiry(&s.id).await;
    let expired = get_session(&app, &c.shop.test_key, "test", &s.id)
        .await
        .unwrap();
    assert_eq!(expired.status, pb::SessionStatus::Expired as i32);
    assert_eq!(
        get_session(&app, &c.shop.test_key, "test", "cs_nonsense")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let r = get_session(&app, &c.shop.test_key, "test", "").await;
    assert_status(r, Code::InvalidArgument, "session_id is required");
}

/// Anything unexpected is INTERNAL `Internal server error`, with nothing of its cause (no
/// SQL, no stored data, no stack trace) in the reply.
pub async fn unexpected_failures_are_opaque(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    // Data no version of this service writes: the read cannot be served.
    app.sql(&format!(
        "UPDATE sessions SET metadata = 'not json' WHERE id = '{}'",
        s.id
    ))
    .await;
    let status = get_session(&app, &c.shop.test_key, "test", &s.id)
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Internal, "Internal server error")
    );
    assert!(
        status.details().is_empty() && status.metadata().get("grpc-status-details-bin").is_none()
    );
}
