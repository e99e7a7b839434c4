//! The catalog: `products`, `product_versions` (+ `product_version_prices`),
//! `product_activations` and `coupons`.
use super::{
    or_conflict,
    schema::{coupons, product_activations, product_version_prices, product_versions, products},
    Db, InsertBatch,
};
use crate::{
    domain::{
        catalog::{Discount, NewCoupon, NewProduct, NewProductVersion, ProductPatch},
        ids::{CouponId, ProductId, ProductVersionId, StoreId},
        time::Timestamp,
        Environment,
    },
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = products, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ProductRow {
    pub id: i64,
    pub store_id: String,
    pub name: String,
    pub description: String,
    pub requires_server_selection: bool,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A product as clients see it: public `PROD_…` id and the version sold per environment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Product {
    pub id: String,
    pub store_id: String,
    pub name: String,
    pub description: String,
    pub requires_server_selection: bool,
    pub active: bool,
    pub created_at: i64,
    pub active_test_version_id: Option<String>,
    pub active_prod_version_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = product_versions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct VersionRow {
    pub id: String,
    pub product_id: i64,
    pub number: i32,
    pub billing_period: String,
    pub trial_days: i32,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Price {
    pub currency: String,
    pub unit_amount: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProductVersion {
    pub id: String,
    pub product_id: String,
    pub number: i32,
    pub prices: Vec<Price>,
    pub billing_period: String,
    pub trial_days: i32,
    pub created_at: i64,
    pub active_environments: Vec<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = coupons, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct CouponRow {
    pub id: String,
    pub store_id: String,
    pub code: String,
    pub percent_off: Option<i32>,
    pub amount_off: Option<i64>,
    pub currency: Option<String>,
    pub expires_at: Option<i64>,
    pub max_redemptions: Option<i32>,
    pub minimum_amount: Option<i64>,
    pub redemptions: i32,
    pub created_at: i64,
    /// False once deactivated (UpdateCoupon): CreateSession no longer finds the code.
    pub active: bool,
}

/// Loads the view of a product: row plus activations. A fragment used by several queries.
macro_rules! product_view {
    ($conn:ident, $row:expr) => {{
        let row: ProductRow = $row;
        let active: Vec<(String, String)> = product_activations::table
            .filter(product_activations::product_id.eq(row.id))
            .select((
                product_activations::environment,
                product_activations::product_version_id,
            ))
            .load($conn)
            .await?;
        let version_in = |env: Environment| {
            active
                .iter()
                .find(|(e, _)| e == env.as_str())
                .map(|(_, v)| v.clone())
        };
        Product {
            id: ProductId::from_db(row.id).short_id(),
            active_test_version_id: version_in(Environment::Test),
            active_prod_version_id: version_in(Environment::Prod),
            store_id: row.store_id,
            name: row.name,
            description: row.description,
            requires_server_selection: row.requires_server_selection,
            active: row.active,
            created_at: row.created_at,
        }
    }};
}

/// Loads the view of a version: row plus prices and the environments selling it.
macro_rules! version_view {
    ($conn:ident, $row:expr) => {{
        let row: VersionRow = $row;
        let prices: Vec<(String, i64)> = product_version_prices::table
            .filter(product_version_prices::product_version_id.eq(&row.id))
            .select((
                product_version_prices::currency,
                product_version_prices::unit_amount,
            ))
            .order(product_version_prices::currency)
            .load($conn)
            .await?;
        let mut envs: Vec<String> = product_activations::table
            .filter(product_activations::product_version_id.eq(&row.id))
            .select(product_activations::environment)
            .load($conn)
            .await?;
        envs.sort();
        ProductVersion {
            product_id: ProductId::from_db(row.product_id).short_id(),
            prices: prices
                .into_iter()
                .map(|(currency, unit_amount)| Price {
                    currency,
                    unit_amount,
                })
                .collect(),
            active_environments: envs,
            id: row.id,
            number: row.number,
            billing_period: row.billing_period,
            trial_days: row.trial_days,
            created_at: row.created_at,
        }
    }};
}

/// `None` if the store does not exist.
pub async fn create_product(
    db: &Db,
    store_id: &StoreId,
    new: &NewProduct,
) -> AppResult<Option<Product>> {
    let now = Timestamp::now().0;
    let row = ProductRow {
        id: ProductId::generate().get(),
        store_id: store_id.to_string(),
        name: new.name.clone(),
        description: new.description.clone(),
        requires_server_selection: new.requires_server_selection,
        active: true,
        created_at: now,
        updated_at: now,
    };
    with_tx!(db, |conn| {
        if !store_exists!(conn, store_id.as_str()) {
            return Ok(None);
        }
        diesel::insert_into(products::table)
            .values(&row)
            .execute(conn)
            .await?;
        Ok(Some(product_view!(conn, row.clone())))
    })
}

pub async fn get_product(db: &Db, id: ProductId) -> AppResult<Option<Product>> {
    with_conn!(db, |conn| {
        let Some(row) = products::table
            .find(id.get())
            .select(ProductRow::as_select())
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        Ok(Some(product_view!(conn, row)))
    })
}

pub async fn update_product(
    db: &Db,
    id: ProductId,
    patch: &ProductPatch,
) -> AppResult<Option<Product>> {
    #[derive(AsChangeset)]
    #[diesel(table_name = products)]
    struct Changes<'a> {
        name: Option<&'a str>,
        description: Option<&'a str>,
        requires_server_selection: Option<bool>,
        active: Option<bool>,
        updated_at: i64,
    }
    let changes = Changes {
        name: patch.name.as_deref(),
        description: patch.description.as_deref(),
        requires_server_selection: patch.requires_server_selection,
        active: patch.active,
        updated_at: Timestamp::now().0,
    };
    with_tx!(db, |conn| {
        let Some(row) = diesel::update(products::table.find(id.get()))
            .set(&changes)
            .returning(ProductRow::as_returning())
            .get_result(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        Ok(Some(product_view!(conn, row)))
    })
}

/// Adds the product's next version; `None` if the product does not exist.
pub async fn create_version(db: &Db, new: &NewProductVersion) -> AppResult<Option<ProductVersion>> {
    let now = Timestamp::now().0;
    let product_id = new.product_id.get();
    with_tx!(db, |conn| {
        // Touching the product row locks it (Postgres) so two concurrent creates cannot
        // both pick the same next number; SQLite writers are serialized anyway.
        let touched = diesel::update(products::table.find(product_id))
            .set(products::updated_at.eq(now))
            .execute(conn)
            .await?;
        if touched == 0 {
            return Ok(None);
        }
        let last: Option<i32> = product_versions::table
            .filter(product_versions::product_id.eq(product_id))
            .select(diesel::dsl::max(product_versions::number))
            .first(conn)
            .await?;
        let row = VersionRow {
            id: ProductVersionId::generate().to_string(),
            product_id,
            number: last.unwrap_or(0) + 1,
            billing_period: new.billing_period.as_str().to_owned(),
            trial_days: new.trial_days,
            created_at: now,
        };
        diesel::insert_into(product_versions::table)
            .values(&row)
            .execute(conn)
            .await?;
        let prices: Vec<_> = new
            .prices
            .iter()
            .map(|(currency, amount)| {
                (
                    product_version_prices::product_version_id.eq(row.id.clone()),
                    product_version_prices::currency.eq(currency.code().to_owned()),
                    product_version_prices::unit_amount.eq(amount.get()),
                )
            })
            .collect();
        conn.insert_batch(diesel::insert_into(product_version_prices::table).values(prices))
            .await?;
        Ok(Some(version_view!(conn, row)))
    })
}

/// Makes the version the one sold in `env`; `None` if the version does not exist.
pub async fn activate_version(
    db: &Db,
    id: &ProductVersionId,
    env: Environment,
) -> AppResult<Option<ProductVersion>> {
    let now = Timestamp::now().0;
    with_tx!(db, |conn| {
        let Some(row) = product_versions::table
            .find(id.as_str())
            .select(VersionRow::as_select())
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        diesel::insert_into(product_activations::table)
            .values((
                product_activations::product_id.eq(row.product_id),
                product_activations::environment.eq(env.as_str()),
                product_activations::product_version_id.eq(&row.id),
                product_activations::activated_at.eq(now),
            ))
            .on_conflict((
                product_activations::product_id,
                product_activations::environment,
            ))
            .do_update()
            .set((
                product_activations::product_version_id.eq(&row.id),
                product_activations::activated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(Some(version_view!(conn, row)))
    })
}

/// `None` if the store does not exist.
pub async fn create_coupon(
    db: &Db,
    store_id: &StoreId,
    new: &NewCoupon,
) -> AppResult<Option<CouponRow>> {
    let (percent_off, amount_off) = match new.discount {
        Discount::PercentOff(p) => (Some(p), None),
        Discount::AmountOff(a) => (None, Some(a.get())),
    };
    let row = CouponRow {
        id: CouponId::generate().to_string(),
        store_id: store_id.to_string(),
        code: new.code.clone(),
        percent_off,
        amount_off,
        currency: new.currency.map(|c| c.code().to_owned()),
        expires_at: new.expires_at.map(|t| t.0),
        max_redemptions: new.max_redemptions,
        minimum_amount: new.minimum_amount.map(|m| m.get()),
        redemptions: 0,
        created_at: Timestamp::now().0,
        active: true,
    };
    with_tx!(db, |conn| {
        if !store_exists!(conn, store_id.as_str()) {
            return Ok(None);
        }
        diesel::insert_into(coupons::table)
            .values(&row)
            .execute(conn)
            .await
            .map_err(or_conflict(
                "A coupon with this code already exists for the store",
            ))?;
        Ok(Some(row.clone()))
    })
}
