//! CreateSession semantics: locking, money, TTL, limits, inline products, slug rights,
//! free orders, and the GetSession views.
use crate::{
    fixtures::{catalog, coupon, create, created, get_session, line, order, release, seconds},
    helpers::{assert_status, Ctx, TestApp},
};
use checkout::pb::{self, create_coupon_request::Discount, CreateSessionRequest as Req};
use std::collections::HashMap;
use tonic::Code;

pub async fn locks_catalog_values(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let req = Req {
        buyer_email: "  Buyer@Example.COM ".into(),
        ..order(vec![line(&c.widget, 2)], "USD")
    };
    let r = create(&app, &c, req).await.unwrap().into_inner();
    assert_eq!(r.outcome, pb::Outcome::PaymentRequired as i32);
    assert!(r.client_token.starts_with("ct_"));
    let s = r.session.unwrap();
    assert_eq!(
        r.checkout_url,
        format!("https://pay.example.test/s/{}", s.id)
    );
    assert_eq!(s.checkout_url, r.checkout_url);
    assert!(s.id.starts_with("cs_") && s.id.len() >= 3 + 22);
    assert_eq!(
        (s.status, s.currency.as_str()),
        (pb::SessionStatus::Open as i32, "USD")
    );
    assert_eq!(
        (s.amount_subtotal, s.amount_discount, s.amount_total),
        (3998, 0, 3998)
    );
    assert_eq!(
        (s.buyer_email.as_str(), s.store_name.as_str()),
        ("buyer@example.com", "Test Shop")
    );
    assert_eq!(seconds(&s.expires_at) - seconds(&s.created_at), 2700);
    let l = &s.lines[0];
    assert_eq!(
        (
            l.product_id.as_str(),
            l.product_name.as_str(),
            l.unit_amount,
            l.quantity,
            l.amount_total
        ),
        (c.widget.as_str(), "Widget", 1999, 2, 3998)
    );
    let v1 = l.product_version_id.clone();

    // The catalog and the store change; the session does not.
    release(
        &app,
        &c.widget,
        &[("USD", 2999)],
        pb::BillingPeriod::Month,
        0,
        &[pb::Environment::Test],
    )
    .await;
    let rename = |paths: &str| prost_types::FieldMask {
        paths: vec![paths.into()],
    };
    let p = pb::UpdateProductRequest {
        product: Some(pb::Product {
            id: c.widget.clone(),
            name: "Widget II".into(),
            ..Default::default()
        }),
        update_mask: Some(rename("name")),
    };
    app.admin().update_product(app.platform(p)).await.unwrap();
    let st = pb::UpdateStoreRequest {
        store: Some(pb::Store {
            id: c.shop.store_id.clone(),
            name: "Renamed".into(),
            ..Default::default()
        }),
        update_mask: Some(rename("name")),
    };
    app.admin().update_store(app.platform(st)).await.unwrap();
    let again = get_session(&app, &c.shop.test_key, "test", &s.id)
        .await
        .unwrap();
    assert_eq!(again, s, "GetSession shows the values locked at creation");
    // A new session gets the new version.
    let n = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    assert_ne!(n.lines[0].product_version_id, v1);
    assert_eq!(
        (
            n.lines[0].unit_amount,
            n.lines[0].product_name.as_str(),
            n.store_name.as_str()
        ),
        (2999, "Widget II", "Renamed")
    );
    assert_eq!(n.lines[0].billing_period, pb::BillingPeriod::Month as i32);
}

pub async fn minor_units_per_currency(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    for (currency, qty, total) in [("JPY", 3, 900), ("KWD", 2, 2500), ("EUR", 1, 1799)] {
        let s = created(&app, &c, order(vec![line(&c.widget, qty)], currency)).await;
        assert_eq!((s.currency.as_str(), s.amount_total), (currency, total));
    }
    // Percent discounts round half up in minor units: 10 % of 1995 is 199.5 → 200.
    let ten = pb::CreateCouponRequest {
        code: "TEN".into(),
        discount: Some(Discount::PercentOff(10)),
        ..Default::default()
    };
    coupon(&app, &c.shop.store_id, ten).await;
    let inline = pb::LineItem {
        inline_product: Some(pb::InlineProduct {
            name: "Odd".into(),
            unit_amount: 1995,
            ..Default::default()
        }),
        quantity: 1,
        ..Default::default()
    };
    let s = create(
        &app,
        &c,
        Req {
            coupon_code: "TEN".into(),
            ..order(vec![inline], "USD")
        },
    )
    .await
    .unwrap()
    .into_inner()
    .session
    .unwrap();
    assert_eq!(
        (
            s.amount_subtotal,
            s.amount_discount,
            s.amount_total,
            s.coupon_code.as_str()
        ),
        (1995, 200, 1795, "TEN")
    );
    // An amount-off coupon never takes the total below zero.
    let big = pb::CreateCouponRequest {
        code: "BIG".into(),
        discount: Some(Discount::AmountOff(1_000_000)),
        currency: "USD".into(),
        ..Default::default()
    };
    coupon(&app, &c.shop.store_id, big).await;
    let r = create(
        &app,
        &c,
        Req {
            coupon_code: "BIG".into(),
            ..order(vec![line(&c.widget, 1)], "USD")
        },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        (r.outcome, r.session.unwrap().amount_total),
        (pb::Outcome::FreeOrder as i32, 0)
    );
    // …and is refused in another currency.
    let r = create(
        &app,
        &c,
        Req {
            coupon_code: "BIG".into(),
            ..order(vec![line(&c.widget, 1)], "EUR")
        },
    )
    .await;
    assert_status(
        r,
        Code::InvalidArgument,
        "couponCode: BIG (not valid for EUR)",
    );
}

pub async fn amounts_never_overflow(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let huge = pb::LineItem {
        inline_product: Some(pb::InlineProduct {
            name: "Huge".into(),
            unit_amount: i64::MAX / 2,
            ..Default::default()
        }),
        quantity: 3,
        ..Default::default()
    };
    let message = "Amount overflow: the order total is too large";
    assert_status(
        create(&app, &c, order(vec![huge.clone()], "USD")).await,
        Code::InvalidArgument,
        message,
    );
    let mut snap = line(&c.widget, 1);
    snap.price_snapshot = Some(i64::MAX);
    assert_status(
        create(&app, &c, order(vec![snap.clone(), snap], "USD")).await,
        Code::InvalidArgument,
        message,
    );
    let mut negative = line(&c.widget, 1);
    negative.price_snapshot = Some(-1);
    assert_eq!(
        create(&app, &c, order(vec![negative], "USD"))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

pub async fn ttl_and_auto_redirect(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let ttl = |s: Option<i64>| Req {
        expires_in_seconds: s,
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    for bad in [0, 299, 86_401, -5] {
        assert_status(
            create(&app, &c, ttl(Some(bad))).await,
            Code::InvalidArgument,
            "expiresInSeconds must be between 300 and 86400",
        );
    }
    for ok in [300, 86_400] {
        let s = created(&app, &c, ttl(Some(ok))).await;
        assert_eq!(seconds(&s.expires_at) - seconds(&s.created_at), ok);
    }
    let redirect = Req {
        auto_redirect: true,
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    assert_status(
        create(&app, &c, redirect.clone()).await,
        Code::InvalidArgument,
        "autoRedirect requires successUrl",
    );
    let with_url = Req {
        success_url: "https://shop.example.com/done".into(),
        ..redirect
    };
    assert!(created(&app, &c, with_url).await.auto_redirect);
}

pub async fn limits_on_lines_and_maps(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let many = order((0..101).map(|_| line(&c.widget, 1)).collect(), "USD");
    assert_status(
        create(&app, &c, many).await,
        Code::InvalidArgument,
        "lines must have at most 100 items",
    );
    let hundred = order((0..100).map(|_| line(&c.widget, 1)).collect(), "USD");
    assert_eq!(created(&app, &c, hundred).await.lines.len(), 100);
    for qty in [0, 1000, -1] {
        assert_status(
            create(&app, &c, order(vec![line(&c.widget, qty)], "USD")).await,
            Code::InvalidArgument,
            "quantity must be 1 to 999",
        );
    }
    let meta = |m: HashMap<String, String>| Req {
        metadata: m,
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let keys = |n: usize| {
        (0..n)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect::<HashMap<_, _>>()
    };
    assert_eq!(
        create(&app, &c, meta(keys(51))).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        create(
            &app,
            &c,
            meta(HashMap::from([("k".repeat(41), "v".into())]))
        )
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        create(
            &app,
            &c,
            meta(HashMap::from([("k".into(), "v".repeat(501))]))
        )
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );
    let mut at_limit = keys(49);
    at_limit.insert("k".repeat(40), "v".repeat(500));
    let s = created(&app, &c, meta(at_limit.clone())).await;
    assert_eq!(s.metadata, at_limit);
}

pub async fn inline_products_and_subscriptions(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let inline = pb::LineItem {
        inline_product: Some(pb::InlineProduct {
            name: "Custom".into(),
            unit_amount: 750,
            billing_period: pb::BillingPeriod::Year as i32,
            trial_days: 30,
            ..Default::default()
        }),
        quantity: 2,
        subscription: true,
        gift_to: Some(pb::GiftTo {
            platform: "steam".into(),
            id: "76561198152492642".into(),
        }),
        custom_variables: HashMap::from([("player".into(), "alice".into())]),
        ..Default::default()
    };
    let s = create(
        &app,
        &c,
        Req {
            with_trial: true,
            ..order(vec![inline.clone()], "USD")
        },
    )
    .await
    .unwrap()
    .into_inner()
    .session
    .unwrap();
    let l = &s.lines[0];
    assert_eq!(
        (
            l.product_id.as_str(),
            l.product_name.as_str(),
            l.amount_total,
            l.trial_days
        ),
        ("", "Custom", 1500, 30)
    );
    assert_eq!(
        (l.billing_period, l.subscription, s.with_trial),
        (pb::BillingPeriod::Year as i32, true, true)
    );
    assert_eq!(l.gift_to.as_ref().unwrap().platform, "steam");
    assert_eq!(l.custom_variables["player"], "alice");
    let mut monthly = line(&c.monthly, 1);
    monthly.subscription = true;
    let s = created(&app, &c, order(vec![monthly], "USD")).await;
    assert_eq!(
        (s.lines[0].trial_days, s.lines[0].billing_period),
        (7, pb::BillingPeriod::Month as i32)
    );
    let mut one_time = line(&c.widget, 1);
    one_time.subscription = true;
    let r = create(&app, &c, order(vec![one_time], "USD")).await;
    assert_status(
        r,
        Code::InvalidArgument,
        "subscription requires a recurring product (billing period MONTH or YEAR)",
    );
    let both = pb::LineItem {
        product_id: c.widget.clone(),
        ..inline
    };
    assert_status(
        create(&app, &c, order(vec![both], "USD")).await,
        Code::InvalidArgument,
        "set product_id or inline_product, not both",
    );
}
