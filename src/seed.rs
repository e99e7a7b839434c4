//! The demo seed: on an empty database (SQLite by default), a store a newcomer can call
//! at once. Everything goes through the same domain rules and queries as AdminService.
use crate::{
    db::{self, catalog, Db},
    domain::{
        catalog::{BillingPeriod, CouponInput, NewCoupon, NewProduct, NewProductVersion},
        ids::{ProductId, ProductVersionId, StoreId},
        store::{ApiKeySecret, NewStore, Origin, Slug},
        time::Timestamp,
        Environment,
    },
    error::AppError,
};
use anyhow::Context;

pub struct DemoSeed {
    pub store_id: String,
    pub slug: String,
    /// Shown once: only its hash is stored.
    pub api_key: String,
    /// (name, `PROD_…` id)
    pub products: Vec<(String, String)>,
    pub coupon_code: String,
    pub origin: String,
}

pub const DEMO_SLUG: &str = "demo";
pub const DEMO_ORIGIN: &str = "http://localhost:3000";

struct DemoProduct {
    name: &'static str,
    description: &'static str,
    requires_server_selection: bool,
    period: BillingPeriod,
    prices: &'static [(&'static str, i64)],
}

const PRODUCTS: [DemoProduct; 3] = [
    DemoProduct {
        name: "Starter Pack",
        description: "A one-time bundle",
        requires_server_selection: false,
        period: BillingPeriod::OneTime,
        prices: &[("USD", 1999), ("EUR", 1799), ("JPY", 2500)],
    },
    DemoProduct {
        name: "Free Sticker",
        description: "Costs nothing: creates a free order at once",
        requires_server_selection: false,
        period: BillingPeriod::OneTime,
        prices: &[("USD", 0), ("EUR", 0), ("JPY", 0)],
    },
    DemoProduct {
        name: "VIP Rank",
        description: "Monthly; needs a server_id on the line",
        requires_server_selection: true,
        period: BillingPeriod::Month,
        prices: &[("USD", 499), ("EUR", 449)],
    },
];

fn seed_error(e: AppError) -> anyhow::Error {
    anyhow::anyhow!("demo seed: {e}")
}

/// Seeds the demo store unless the database already holds a store.
pub async fn seed_if_empty(db: &Db) -> anyhow::Result<Option<DemoSeed>> {
    if db::stores::any_exist(db).await.map_err(seed_error)? {
        return Ok(None);
    }
    let store = db::stores::create(
        db,
        &NewStore {
            slug: Slug::parse(DEMO_SLUG)?,
            name: "Demo Store".into(),
            active: true,
            approved_for_prod: false,
            origins: vec![Origin::parse("origin", DEMO_ORIGIN)?],
        },
    )
    .await;
    let store = match store {
        Ok(s) => s,
        // Another process seeded it between the check and the insert.
        Err(AppError::AlreadyExists(_)) => return Ok(None),
        Err(e) => return Err(seed_error(e)),
    };
    let store_id = StoreId::from_trusted(store.row.id.clone());
    let mut products = Vec::new();
    for p in &PRODUCTS {
        let new = NewProduct::parse(p.name, p.description, p.requires_server_selection)?;
        let product = catalog::create_product(db, &store_id, &new)
            .await
            .map_err(seed_error)?
            .context("demo store vanished")?;
        let id = ProductId::parse(&product.id).context("fresh product id")?;
        let prices: Vec<(String, i64)> =
            p.prices.iter().map(|(c, a)| (c.to_string(), *a)).collect();
        let version = NewProductVersion::parse(id, &prices, p.period, 0)?;
        let version = catalog::create_version(db, &version)
            .await
            .map_err(seed_error)?
            .context("demo product vanished")?;
        let version_id = ProductVersionId::from_trusted(version.id);
        catalog::activate_version(db, &version_id, Environment::Test)
            .await
            .map_err(seed_error)?;
        products.push((p.name.to_owned(), product.id));
    }
    let coupon = NewCoupon::parse(
        CouponInput {
            code: "FREE100",
            percent_off: Some(100),
            amount_off: None,
            currency: "",
            expires_at: None,
            max_redemptions: 0,
            minimum_amount: 0,
        },
        Timestamp::now(),
    )?;
    catalog::create_coupon(db, &store_id, &coupon)
        .await
        .map_err(seed_error)?;
    let secret = ApiKeySecret::generate(Environment::Test);
    db::api_keys::create(
        db,
        &store_id,
        Environment::Test,
        secret.hash(),
        secret.prefix(),
    )
    .await
    .map_err(seed_error)?;
    Ok(Some(DemoSeed {
        store_id: store.row.id,
        slug: DEMO_SLUG.into(),
        api_key: secret.expose().to_owned(),
        products,
        coupon_code: coupon.code,
        origin: DEMO_ORIGIN.into(),
    }))
}
