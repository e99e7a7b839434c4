//! AdminService catalog: products, immutable versions, activations, coupons.
use crate::{
    fixtures::create_store,
    helpers::{assert_status, bad_request_fields, Ctx, TestApp},
};
use checkout::pb::{self, create_coupon_request::Discount};
use prost_types::FieldMask;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn price(currency: &str, unit_amount: i64) -> pb::Price {
    pb::Price {
        currency: currency.into(),
        unit_amount,
    }
}

async fn product(app: &TestApp, store_id: &str) -> pb::Product {
    let req = pb::CreateProductRequest {
        store_id: store_id.into(),
        name: "Widget".into(),
        description: "A widget".into(),
        requires_server_selection: true,
    };
    app.admin()
        .create_product(app.platform(req))
        .await
        .unwrap()
        .into_inner()
}

fn version_req(product_id: &str, prices: Vec<pb::Price>) -> pb::CreateProductVersionRequest {
    pb::CreateProductVersionRequest {
        product_id: product_id.into(),
        prices,
        billing_period: pb::BillingPeriod::OneTime as i32,
        trial_days: 0,
    }
}

pub async fn product_and_versions_round_trip(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let p = product(&app, &store.id).await;
    assert!(p.id.starts_with("PROD_") && p.active && p.requires_server_selection);
    assert_eq!(p.active_test_version_id, "");

    let v1 = app
        .admin()
        .create_product_version(app.platform(version_req(
            &p.id,
            vec![price("USD", 1999), price("JPY", 300), price("KWD", 1250)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v1.number, v1.product_id.as_str()), (1, p.id.as_str()));
    let currencies: Vec<_> = v1
        .prices
        .iter()
        .map(|p| (p.currency.as_str(), p.unit_amount))
        .collect();
    assert_eq!(currencies, [("JPY", 300), ("KWD", 1250), ("USD", 1999)]);
    assert!(v1.active_environments.is_empty());

    let monthly = pb::CreateProductVersionRequest {
        billing_period: pb::BillingPeriod::Month as i32,
        trial_days: 14,
        ..version_req(&p.id, vec![price("USD", 2499)])
    };
    let v2 = app
        .admin()
        .create_product_version(app.platform(monthly))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v2.number, v2.billing_period, v2.trial_days),
        (2, pb::BillingPeriod::Month as i32, 14)
    );

    let activate = |id: &str, env: pb::Environment| {
        app.platform(pb::ActivateProductVersionRequest {
            product_version_id: id.into(),
            environment: env as i32,
        })
    };
    let a = app
        .admin()
        .activate_product_version(activate(&v1.id, pb::Environment::Test))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.active_environments, [pb::Environment::Test as i32]);
    app.admin()
        .activate_product_version(activate(&v1.id, pb::Environment::Prod))
        .await
        .unwrap();
    // Activating v2 in test moves test to v2 and leaves prod on v1.
    app.admin()
        .activate_product_version(activate(&v2.id, pb::Environment::Test))
        .await
        .unwrap();
    let get = || {
        app.platform(pb::GetProductRequest {
            product_id: p.id.clone(),
        })
    };
    let fetched = app.admin().get_product(get()).await.unwrap().into_inner();
    assert_eq!(
        (
            fetched.active_test_version_id.as_str(),
            fetched.active_prod_version_id.as_str()
        ),
        (v2.id.as_str(), v1.id.as_str())
    );

    // Archive: only the masked field changes.
    let update = pb::UpdateProductRequest {
        product: Some(pb::Product {
            id: p.id.clone(),
            active: false,
            name: "ignored".into(),
            ..Default::default()
        }),
        update_mask: mask(&["active"]),
    };
    let archived = app
        .admin()
        .update_product(app.platform(update))
        .await
        .unwrap()
        .into_inner();
    assert!(!archived.active);
    assert_eq!(archived.name, "Widget");
    assert_eq!(archived.active_test_version_id, v2.id);
}

pub async fn catalog_validation(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let p = product(&app, &store.id).await;
    let create = |req| {
        let mut client = app.admin();
        let req = app.platform(req);
        async move { client.create_product_version(req).await }
    };
    let r = create(version_req(&p.id, vec![price("usd", 100)])).await;
    let status = assert_status(
        r,
        Code::InvalidArgument,
        "Invalid currency format: \"usd\". Must be 3 uppercase letters (e.g., \"USD\", \"EUR\", \"JPY\")",
    );
    assert_eq!(bad_request_fields(&status), ["prices[0].currency"]);
    let r = create(version_req(
        &p.id,
        vec![price("USD", 100), price("USD", 200)],
    ))
    .await;
    assert_status(r, Code::InvalidArgument, "duplicate price for USD");
    let r = create(version_req(&p.id, vec![price("USD", -1)])).await;
    assert_status(r, Code::InvalidArgument, "unit_amount must not be negative");
    let r = create(version_req(&p.id, vec![])).await;
    assert_status(r, Code::InvalidArgument, "prices must have 1 to 50 entries");
    let trial_on_one_time = pb::CreateProductVersionRequest {
        trial_days: 7,
        ..version_req(&p.id, vec![price("USD", 1)])
    };
    assert_eq!(
        create(trial_on_one_time).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let r = create(version_req("PROD_!!", vec![price("USD", 1)])).await;
    assert_status(
        r,
        Code::InvalidArgument,
        "Expected format: PROD_xxx, got \"PROD_!!\"",
    );
    let r = create(version_req("411486491630370816", vec![price("USD", 1)])).await;
    assert_status(
        r,
        Code::InvalidArgument,
        "Expected format: PROD_xxx, got \"411486491630370816\"",
    );
    let unknown = checkout::domain::ids::ProductId::generate().short_id();
    assert_status(
        create(version_req(&unknown, vec![price("USD", 1)])).await,
        Code::NotFound,
        "Product not found",
    );
    // None of the refused versions was written: the next one is number 1.
    let v = create(version_req(&p.id, vec![price("USD", 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.number, 1);
    let name = pb::CreateProductRequest {
        store_id: store.id.clone(),
        name: "".into(),
        ..Default::default()
    };
    assert_status(
        app.admin().create_product(app.platform(name)).await,
        Code::InvalidArgument,
        "name is required",
    );
    let unknown_version = pb::ActivateProductVersionRequest {
        product_version_id: checkout::domain::ids::ProductVersionId::generate().to_string(),
        environment: pb::Environment::Test as i32,
    };
    assert_status(
        app.admin()
            .activate_product_version(app.platform(unknown_version))
            .await,
        Code::NotFound,
        "Product version not found",
    );
}

/// Versions are numbered per product with no gaps or duplicates, even when created at once.
pub async fn concurrent_versions_get_distinct_numbers(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let p = product(&app, &store.id).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let mut client = app.admin();
            let req = app.platform(version_req(&p.id, vec![price("USD", 100 + i)]));
            tokio::spawn(async move {
                client
                    .create_product_version(req)
                    .await
                    .map(|r| r.into_inner().number)
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap().expect("every concurrent create succeeds"));
    }
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
}

pub async fn coupon_round_trip(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let base = || pb::CreateCouponRequest {
        store_id: store.id.clone(),
        code: "save10".into(),
        ..Default::default()
    };
    let percent = pb::CreateCouponRequest {
        discount: Some(Discount::PercentOff(10)),
        max_redemptions: 5,
        ..base()
    };
    let c = app
        .admin()
        .create_coupon(app.platform(percent))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((c.code.as_str(), c.max_redemptions), ("SAVE10", 5));
    assert_eq!(c.discount, Some(pb::coupon::Discount::PercentOff(10)));
    // Codes are case-insensitive, so "Save10" is the same code.
    let dup = pb::CreateCouponRequest {
        code: "Save10".into(),
        discount: Some(Discount::PercentOff(5)),
        ..base()
    };
    assert_status(
        app.admin().create_coupon(app.platform(dup)).await,
        Code::AlreadyExists,
        "A coupon with this code already exists for the store",
    );
    let amount = pb::CreateCouponRequest {
        code: "FIVE-OFF".into(),
        discount: Some(Discount::AmountOff(500)),
        currency: "EUR".into(),
        minimum_amount: 2000,
        expires_at: Some(prost_types::Timestamp {
            seconds: 4_102_444_800,
            nanos: 0,
        }),
        ..base()
    };
    let c = app
        .admin()
        .create_coupon(app.platform(amount))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((c.currency.as_str(), c.minimum_amount), ("EUR", 2000));
    assert_eq!(c.expires_at.map(|t| t.seconds), Some(4_102_444_800));

    let invalid = [
        (
            pb::CreateCouponRequest {
                code: "A".into(),
                ..base()
            },
            "exactly one of percent_off and amount_off is required",
        ),
        (
            pb::CreateCouponRequest {
                code: "B".into(),
                discount: Some(Discount::PercentOff(0)),
                ..base()
            },
            "percent_off must be 1 to 100",
        ),
        (
            pb::CreateCouponRequest {
                code: "C".into(),
                discount: Some(Discount::PercentOff(101)),
                ..base()
            },
            "percent_off must be 1 to 100",
        ),
        (
            pb::CreateCouponRequest {
                code: "D".into(),
                discount: Some(Discount::AmountOff(100)),
                ..base()
            },
            "currency is required with amount_off or minimum_amount",
        ),
        (
            pb::CreateCouponRequest {
                code: "E F".into(),
                discount: Some(Discount::PercentOff(5)),
                ..base()
            },
            "code must be 1-64 letters, digits, dashes or underscores",
        ),
        (
            pb::CreateCouponRequest {
                code: "G".into(),
                discount: Some(Discount::PercentOff(5)),
                expires_at: Some(prost_types::Timestamp {
                    seconds: 1_000_000,
                    nanos: 0,
                }),
                ..base()
            },
            "expires_at must be in the future",
        ),
    ];
    for (req, message) in invalid {
        assert_status(
            app.admin().create_coupon(app.platform(req)).await,
            Code::InvalidArgument,
            message,
        );
    }
}
