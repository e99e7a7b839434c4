//! Provisioning through AdminService, as an operator would.
use crate::helpers::TestApp;
use checkout::pb;

/// A store with a test key and a prod key, active and approved, with one return origin.
pub struct Shop {
    pub store_id: String,
    pub slug: String,
    pub test_key: String,
    pub test_key_id: String,
    pub prod_key: String,
}

pub fn unique_slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        checkout::domain::ids::random_base62(8).to_lowercase()
    )
}

pub async fn create_store(app: &TestApp, active: bool, approved_for_prod: bool) -> pb::Store {
    let req = pb::CreateStoreRequest {
        slug: unique_slug("shop"),
        name: "Test Shop".into(),
        active,
        approved_for_prod,
        allowed_return_origins: vec!["https://shop.example.com".into()],
    };
    app.admin()
        .create_store(app.platform(req))
        .await
        .expect("create store")
        .into_inner()
}

pub async fn create_key(
    app: &TestApp,
    store_id: &str,
    env: pb::Environment,
) -> pb::CreateApiKeyResponse {
    let req = pb::CreateApiKeyRequest {
        store_id: store_id.into(),
        environment: env as i32,
    };
    app.admin()
        .create_api_key(app.platform(req))
        .await
        .expect("create key")
        .into_inner()
}

pub async fn shop_with(app: &TestApp, active: bool, approved_for_prod: bool) -> Shop {
    let store = create_store(app, active, approved_for_prod).await;
    let test = create_key(app, &store.id, pb::Environment::Test).await;
    let prod = create_key(app, &store.id, pb::Environment::Prod).await;
    Shop {
        store_id: store.id,
        slug: store.slug,
        test_key: test.secret,
        test_key_id: test.api_key_id,
        prod_key: prod.secret,
    }
}

pub async fn shop(app: &TestApp) -> Shop {
    shop_with(app, true, true).await
}

/// A GetSession for a session that does not exist: it reaches the handler only when
/// authentication passed, and then answers NOT_FOUND.
pub fn probe() -> pb::GetSessionRequest {
    pb::GetSessionRequest {
        session_id: checkout::domain::ids::SessionId::generate().to_string(),
    }
}

/// A store with a catalog covering every CreateSession rule.
pub struct Catalog {
    pub shop: Shop,
    /// USD 1999, EUR 1799, JPY 300, KWD 1250; one-time; sold in test and prod.
    pub widget: String,
    /// Requires a server selection; USD 500; test only.
    pub vip: String,
    /// USD 0; test only.
    pub free: String,
    /// Monthly, 7 trial days, USD 999; test only.
    pub monthly: String,
    /// Has a version, never activated.
    pub unreleased: String,
    /// Activated, then archived (active = false).
    pub archived: String,
}

pub async fn product(app: &TestApp, store_id: &str, name: &str, server: bool) -> String {
    let req = pb::CreateProductRequest {
        store_id: store_id.into(),
        name: name.into(),
        description: String::new(),
        requires_server_selection: server,
    };
    app.admin()
        .create_product(app.platform(req))
        .await
        .expect("product")
        .into_inner()
        .id
}

/// Creates a version and activates it in each of `envs`; returns the version id.
pub async fn release(
    app: &TestApp,
    product_id: &str,
    prices: &[(&str, i64)],
    period: pb::BillingPeriod,
    trial_days: i32,
    envs: &[pb::Environment],
) -> String {
    let req = pb::CreateProductVersionRequest {
        product_id: product_id.into(),
        prices: prices
            .iter()
            .map(|(c, a)| pb::Price {
                currency: c.to_string(),
                unit_amount: *a,
            })
            .collect(),
        billing_period: period as i32,
        trial_days,
    };
    let v = app
        .admin()
        .create_product_version(app.platform(req))
        .await
        .expect("version")
        .into_inner();
    for env in envs {
        let req = pb::ActivateProductVersionRequest {
            product_version_id: v.id.clone(),
            environment: *env as i32,
        };
        app.admin()
            .activate_product_version(app.platform(req))
            .await
            .expect("activate");
    }
    v.id
}

pub async fn catalog(app: &TestApp) -> Catalog {
    use pb::{BillingPeriod::*, Environment::*};
    let shop = shop(app).await;
    let update = pb::UpdateStoreRequest {
        store: Some(pb::Store {
            id: shop.store_id.clone(),
            allowed_return_origins: vec![
                "https://shop.example.com".into(),
                "http://localhost:3000".into(),
            ],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["allowed_return_origins".into()],
        }),
    };
    app.admin()
        .update_store(app.platform(update))
        .await
        .expect("origins");
    let s = shop.store_id.clone();
    let widget = product(app, &s, "Widget", false).await;
    release(
        app,
        &widget,
        &[("USD", 1999), ("EUR", 1799), ("JPY", 300), ("KWD", 1250)],
        OneTime,
        0,
        &[Test, Prod],
    )
    .await;
    let vip = product(app, &s, "VIP", true).await;
    release(app, &vip, &[("USD", 500)], OneTime, 0, &[Test]).await;
    let free = product(app, &s, "Freebie", false).await;
    release(app, &free, &[("USD", 0)], OneTime, 0, &[Test]).await;
    let monthly = product(app, &s, "Monthly", false).await;
    release(app, &monthly, &[("USD", 999)], Month, 7, &[Test]).await;
    let unreleased = product(app, &s, "Unreleased", false).await;
    release(app, &unreleased, &[("USD", 100)], OneTime, 0, &[]).await;
    let archived = product(app, &s, "Archived", false).await;
    release(app, &archived, &[("USD", 100)], OneTime, 0, &[Test]).await;
    let archive = pb::UpdateProductRequest {
        product: Some(pb::Product {
            id: archived.clone(),
            active: false,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["active".into()],
        }),
    };
    app.admin()
        .update_product(app.platform(archive))
        .await
        .expect("archive");
    Catalog {
        shop,
        widget,
        vip,
        free,
        monthly,
        unreleased,
        archived,
    }
}

pub fn line(product_id: &str, quantity: i32) -> pb::LineItem {
    pb::LineItem {
        product_id: product_id.into(),
        quantity,
        ..Default::default()
    }
}

pub fn order(lines: Vec<pb::LineItem>, currency: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        lines,
        currency: currency.into(),
        ..Default::default()
    }
}

pub async fn coupon(app: &TestApp, store_id: &str, req: pb::CreateCouponRequest) -> pb::Coupon {
    let req = pb::CreateCouponRequest {
        store_id: store_id.into(),
        ..req
    };
    app.admin()
        .create_coupon(app.platform(req))
        .await
        .expect("coupon")
        .into_inner()
}

pub type Reply = Result<tonic::Response<pb::CreateSessionResponse>, tonic::Status>;

/// CreateSession with the catalog store's test key.
pub async fn create(app: &TestApp, c: &Catalog, req: pb::CreateSessionRequest) -> Reply {
    let req = crate::helpers::keyed(req, &c.shop.test_key, "test");
    app.checkout().create_session(req).await
}

/// CreateSession that must succeed; its session.
pub async fn created(app: &TestApp, c: &Catalog, req: pb::CreateSessionRequest) -> pb::Session {
    create(app, c, req)
        .await
        .expect("create session")
        .into_inner()
        .session
        .expect("session")
}

pub async fn get_session(
    app: &TestApp,
    key: &str,
    env: &str,
    id: &str,
) -> Result<pb::Session, tonic::Status> {
    let req = crate::helpers::keyed(
        pb::GetSessionRequest {
            session_id: id.into(),
        },
        key,
        env,
    );
    app.checkout()
        .get_session(req)
        .await
        .map(tonic::Response::into_inner)
}

pub fn seconds(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().expect("timestamp").seconds
}

/// A coupon "ONCE": 10 % off, one redemption in all.
pub async fn single_use_coupon(app: &TestApp, c: &Catalog) {
    let once = pb::CreateCouponRequest {
        code: "ONCE".into(),
        discount: Some(pb::create_coupon_request::Discount::PercentOff(10)),
        max_redemptions: 1,
        ..Default::default()
    };
    coupon(app, &c.shop.store_id, once).await;
}
