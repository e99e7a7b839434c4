//! One test per row of the SPEC section 4 error table: exact code, exact message, and
//! `google.rpc.BadRequest` details on every INVALID_ARGUMENT.
use crate::{
    fixtures::{
        catalog, coupon, create, created, line, order, product, release, shop, single_use_coupon,
        Reply,
    },
    helpers::{assert_status, bad_request_fields, keyed, Ctx, TestApp},
};
use checkout::pb::{self, create_coupon_request::Discount, CreateSessionRequest as Req};
use tonic::Code;

/// INVALID_ARGUMENT with this exact message and at least one field violation.
#[track_caller]
fn invalid(result: Reply, message: &str) {
    let status = assert_status(result, Code::InvalidArgument, message);
    assert!(
        !bad_request_fields(&status).is_empty(),
        "BadRequest details on {message}"
    );
}

pub async fn missing_required_fields(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    invalid(
        create(&app, &c, Req::default()).await,
        "Missing required fields: productId, currency",
    );
    invalid(
        create(&app, &c, order(vec![line(&c.widget, 1)], "")).await,
        "Missing required fields: currency",
    );
    invalid(
        create(&app, &c, order(vec![], "USD")).await,
        "Missing required fields: productId",
    );
    let neither = pb::LineItem {
        quantity: 1,
        ..Default::default()
    };
    invalid(
        create(&app, &c, order(vec![line(&c.widget, 1), neither], "USD")).await,
        "Missing required fields: productId",
    );
}

pub async fn invalid_currency_format(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    for bad in ["usd", "US", "USDD", "U$D"] {
        let message = format!("Invalid currency format: \"{bad}\". Must be 3 uppercase letters (e.g., \"USD\", \"EUR\", \"JPY\")");
        invalid(
            create(&app, &c, order(vec![line(&c.widget, 1)], bad)).await,
            &message,
        );
    }
}

pub async fn invalid_product_id_format(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    for bad in [
        "prod_abc",
        "PROD_",
        "PROD_!!",
        "411486491630370816",
        "PROD_zzzzzzzzzzzz",
    ] {
        let message = format!("Expected format: PROD_xxx, got \"{bad}\"");
        invalid(
            create(&app, &c, order(vec![line(bad, 1)], "USD")).await,
            &message,
        );
    }
}

pub async fn order_merchant_external_id_rules(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let with = |id: &str| Req {
        order_merchant_external_id: Some(id.into()),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    invalid(
        create(&app, &c, with("   ")).await,
        "orderMerchantExternalId must not be empty",
    );
    invalid(
        create(&app, &c, with(&"x".repeat(129))).await,
        "orderMerchantExternalId must be at most 128 characters",
    );
    let ok = create(&app, &c, with(&format!("  {}  ", "y".repeat(128))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.session.unwrap().order_merchant_external_id,
        "y".repeat(128),
        "stored trimmed"
    );
}

pub async fn invalid_billing_detail(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let with = |b: pb::BillingDetail| Req {
        billing_detail: Some(b),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let status = assert_status(
        create(
            &app,
            &c,
            with(pb::BillingDetail {
                country: "US".into(),
                ..Default::default()
            }),
        )
        .await,
        Code::InvalidArgument,
        "Invalid billingDetail: state is required for US and CA",
    );
    assert_eq!(bad_request_fields(&status), ["billing_detail.state"]);
    let ca = with(pb::BillingDetail {
        country: "CA".into(),
        ..Default::default()
    });
    invalid(
        create(&app, &c, ca).await,
        "Invalid billingDetail: state is required for US and CA",
    );
    let xx = with(pb::BillingDetail {
        country: "XX".into(),
        ..Default::default()
    });
    invalid(
        create(&app, &c, xx).await,
        "Invalid billingDetail: country must be an ISO 3166-1 alpha-2 code, e.g. US",
    );
    let email = with(pb::BillingDetail {
        email: "not-an-email".into(),
        ..Default::default()
    });
    invalid(
        create(&app, &c, email).await,
        "Invalid billingDetail: not a valid email address",
    );
    let ok = pb::BillingDetail {
        country: "us".into(),
        state: "CA".into(),
        email: " Pay@Example.COM ".into(),
        ..Default::default()
    };
    let s = created(&app, &c, with(ok)).await;
    let b = s.billing_detail.unwrap();
    assert_eq!(
        (b.country.as_str(), b.email.as_str()),
        ("US", "pay@example.com")
    );
}

pub async fn api_checkout_not_enabled(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let clear = pb::UpdateStoreRequest {
        store: Some(pb::Store {
            id: c.shop.store_id.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["allowed_return_origins".into()],
        }),
    };
    app.admin().update_store(app.platform(clear)).await.unwrap();
    let r = create(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    assert_status(
        r,
        Code::FailedPrecondition,
        "API checkout is not enabled for this store.",
    );
}

pub async fn return_url_rules(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let base = || order(vec![line(&c.widget, 1)], "USD");
    let success = |u: &str| Req {
        success_url: u.into(),
        ..base()
    };
    let cancel = |u: &str| Req {
        cancel_url: u.into(),
        ..base()
    };
    invalid(
        create(&app, &c, success("https://attacker.com/x")).await,
        "successUrl: URL origin (https://attacker.com) is not in the allow-list",
    );
    invalid(
        create(&app, &c, cancel("https://attacker.com/x")).await,
        "cancelUrl: URL origin (https://attacker.com) is not in the allow-list",
    );
    // Origins match exactly: another port or a look-alike host is another origin.
    invalid(
        create(&app, &c, success("https://shop.example.com:8443/x")).await,
        "successUrl: URL origin (https://shop.example.com:8443) is not in the allow-list",
    );
    invalid(
        create(&app, &c, success("https://shop.example.com.attacker.com/")).await,
        "successUrl: URL origin (https://shop.example.com.attacker.com) is not in the allow-list",
    );
    invalid(
        create(&app, &c, success("http://shop.example.com/ok")).await,
        "successUrl: URL scheme must be https",
    );
    invalid(
        create(&app, &c, cancel("javascript:alert(1)")).await,
        "cancelUrl: URL scheme must be https",
    );
    // http on localhost is fine in test, and not in prod.
    let local = success("http://localhost:3000/ok?s={CHECKOUT_SESSION_ID}");
    create(&app, &c, local.clone())
        .await
        .expect("http://localhost in test");
    let r = app
        .checkout()
        .create_session(keyed(local, &c.shop.prod_key, "prod"))
        .await;
    invalid(r, "successUrl: URL scheme must be https");
}

pub async fn product_not_found(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let unknown = checkout::domain::ids::ProductId::generate().short_id();
    let r = create(
        &app,
        &c,
        order(vec![line(&c.widget, 1), line(&unknown, 1)], "USD"),
    )
    .await;
    assert_status(r, Code::NotFound, "Product not found");
}

pub async fn product_of_another_store(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let other = shop(&app).await;
    let theirs = product(&app, &other.store_id, "Theirs", false).await;
    release(
        &app,
        &theirs,
        &[("USD", 100)],
        pb::BillingPeriod::OneTime,
        0,
        &[pb::Environment::Test],
    )
    .await;
    let r = create(&app, &c, order(vec![line(&theirs, 1)], "USD")).await;
    assert_status(
        r,
        Code::PermissionDenied,
        "Product does not belong to this store",
    );
}

pub async fn product_not_active_for_environment(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let message = "Product not found or not active for this environment";
    assert_status(
        create(&app, &c, order(vec![line(&c.unreleased, 1)], "USD")).await,
        Code::NotFound,
        message,
    );
    // The VIP product is sold in test only.
    let mut vip = line(&c.vip, 1);
    vip.server_id = "srv-1".into();
    let r = app
        .checkout()
        .create_session(keyed(order(vec![vip], "USD"), &c.shop.prod_key, "prod"))
        .await;
    assert_status(r, Code::NotFound, message);
}

pub async fn product_inactive(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    invalid(
        create(&app, &c, order(vec![line(&c.archived, 1)], "USD")).await,
        "One or more packages are not found or inactive",
    );
}

pub async fn server_selection_required(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    invalid(
        create(&app, &c, order(vec![line(&c.vip, 1)], "USD")).await,
        "Package 'VIP' requires a server selection",
    );
    let mut vip = line(&c.vip, 1);
    vip.server_id = "srv-42".into();
    let s = created(&app, &c, order(vec![vip], "USD")).await;
    assert_eq!(s.lines[0].server_id, "srv-42");
}

pub async fn currency_not_supported(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    invalid(
        create(&app, &c, order(vec![line(&c.widget, 1)], "GBP")).await,
        "Currency GBP is not supported for this product",
    );
    invalid(
        create(&app, &c, order(vec![line(&c.vip, 1)], "EUR")).await,
        "Package 'VIP' requires a server selection",
    );
    // A well-formed code no catalog sells in.
    invalid(
        create(&app, &c, order(vec![line(&c.widget, 1)], "XYZ")).await,
        "Currency XYZ is not supported for this product",
    );
}

pub async fn coupon_refusals(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let store = &c.shop.store_id;
    // Expires 3 s from now (exactly, not rounded to a second), so a busy machine cannot
    // make it expire before it is created; the test waits for that moment below.
    let expiry = checkout::domain::time::Timestamp::now().0 + 3_000_000;
    let soon = prost_types::Timestamp {
        seconds: expiry / 1_000_000,
        nanos: ((expiry % 1_000_000) * 1_000) as i32,
    };
    let p = |code: &str| pb::CreateCouponRequest {
        code: code.into(),
        discount: Some(Discount::PercentOff(10)),
        ..Default::default()
    };
    coupon(
        &app,
        store,
        pb::CreateCouponRequest {
            expires_at: Some(soon),
            ..p("SOON")
        },
    )
    .await;
    coupon(
        &app,
        store,
        pb::CreateCouponRequest {
            max_redemptions: 1,
            ..p("ONCE")
        },
    )
    .await;
    coupon(
        &app,
        store,
        pb::CreateCouponRequest {
            minimum_amount: 5000,
            currency: "USD".into(),
            ..p("BIG")
        },
    )
    .await;
    let with = |code: &str| Req {
        coupon_code: code.into(),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    invalid(
        create(&app, &c, with("BIG")).await,
        "couponCode: BIG (does not meet minimum)",
    );
    let two = Req {
        coupon_code: "BIG".into(),
        ..order(vec![line(&c.widget, 3)], "USD")
    };
    assert_eq!(created(&app, &c, two).await.amount_discount, 600);
    create(&app, &c, with("once"))
        .await
        .expect("first use of ONCE (codes are case-insensitive)");
    invalid(
        create(&app, &c, with("ONCE")).await,
        "couponCode: ONCE (exhausted)",
    );
    invalid(
        create(&app, &c, with("NOPE")).await,
        "couponCode: NOPE (not found)",
    );
    let wait = expiry + 50_000 - checkout::domain::time::Timestamp::now().0;
    tokio::time::sleep(std::time::Duration::from_micros(wait.max(0) as u64)).await;
    invalid(
        create(&app, &c, with("SOON")).await,
        "couponCode: SOON (expired)",
    );
}

/// A refused request leaves nothing behind: not a reserved coupon, not a claimed key.
pub async fn refusals_write_nothing(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    single_use_coupon(&app, &c).await;
    let key = [("idempotency-key", "k-1")];
    let send = |req: Req| {
        let mut r = keyed(req, &c.shop.test_key, "test");
        r.metadata_mut().insert(key[0].0, key[0].1.parse().unwrap());
        let mut client = app.checkout();
        async move { client.create_session(r).await }
    };
    // Fails after the coupon was looked at (the VIP line has no server).
    let bad = Req {
        coupon_code: "ONCE".into(),
        ..order(vec![line(&c.widget, 1), line(&c.vip, 1)], "USD")
    };
    invalid(send(bad).await, "Package 'VIP' requires a server selection");
    let good = Req {
        coupon_code: "ONCE".into(),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let s = send(good)
        .await
        .expect("key and coupon are still free")
        .into_inner()
        .session
        .unwrap();
    assert_eq!(s.amount_discount, 200);
}
