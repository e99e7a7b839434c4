//! The AdminService lists (stores, API keys, products, coupons), newest first with keyset
//! paging on (created_at, id) like ListSessions, and deactivating a coupon.
use super::{
    api_keys::ApiKeyRow,
    catalog::{CouponRow, Product, ProductRow},
    schema::{api_keys, coupons, product_activations, products, store_return_origins, stores},
    sessions::ListCursor,
    stores::{Store, StoreRow},
    Db,
};
use crate::{
    domain::{
        ids::{CouponId, ProductId, StoreId},
        Environment,
    },
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// Cuts the one extra row a query fetched (`limit(page_size + 1)`): its presence is what
/// says there is a next page, which starts after the last row kept.
pub fn page<T>(
    mut rows: Vec<T>,
    page_size: i64,
    key: impl Fn(&T) -> (i64, String),
) -> (Vec<T>, Option<ListCursor>) {
    if rows.len() as i64 <= page_size {
        return (rows, None);
    }
    rows.truncate(page_size as usize);
    let next = rows.last().map(|r| {
        let (created_at, id) = key(r);
        ListCursor { created_at, id }
    });
    (rows, next)
}

/// Newest first, strictly after the cursor: one boxed query shape for every list here.
macro_rules! newest_first {
    ($table:ident, $q:expr, $after:expr, $page_size:expr) => {{
        let mut q = $q
            .order(($table::created_at.desc(), $table::id.desc()))
            .limit($page_size + 1)
            .into_boxed();
        if let Some((at, id)) = $after {
            q = q.filter(
                $table::created_at
                    .lt(at)
                    .or($table::created_at.eq(at).and($table::id.lt(id))),
            );
        }
        q
    }};
}

type Page<T> = AppResult<Option<(Vec<T>, Option<ListCursor>)>>;

fn text_cursor(after: Option<&ListCursor>) -> Option<(i64, String)> {
    after.map(|c| (c.created_at, c.id.clone()))
}

pub async fn list_stores(
    db: &Db,
    after: Option<&ListCursor>,
    page_size: i64,
) -> AppResult<(Vec<Store>, Option<ListCursor>)> {
    let (rows, origins) = with_conn!(db, |conn| {
        let q = stores::table.select(StoreRow::as_select());
        let rows: Vec<StoreRow> = newest_first!(stores, q, text_cursor(after), page_size)
            .load(conn)
            .await?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let origins: Vec<(String, String)> = store_return_origins::table
            .filter(store_return_origins::store_id.eq_any(&ids))
            .select((store_return_origins::store_id, store_return_origins::origin))
            .order((store_return_origins::store_id, store_return_origins::origin))
            .load(conn)
            .await?;
        (rows, origins)
    });
    let (rows, next) = page(rows, page_size, |r| (r.created_at, r.id.clone()));
    let stores = rows
        .into_iter()
        .map(|row| Store {
            allowed_return_origins: origins
                .iter()
                .filter(|(s, _)| *s == row.id)
                .map(|(_, o)| o.clone())
                .collect(),
            row,
        })
        .collect();
    Ok((stores, next))
}

/// `None` if the store does not exist.
pub async fn list_api_keys(
    db: &Db,
    store: &StoreId,
    after: Option<&ListCursor>,
    page_size: i64,
) -> Page<ApiKeyRow> {
    let rows: Vec<ApiKeyRow> = with_conn!(db, |conn| {
        if !store_exists!(conn, store.as_str()) {
            return Ok(None);
        }
        let q = api_keys::table
            .filter(api_keys::store_id.eq(store.as_str()))
            .select(ApiKeyRow::as_select());
        newest_first!(api_keys, q, text_cursor(after), page_size)
            .load(conn)
            .await?
    });
    Ok(Some(page(rows, page_size, |r| {
        (r.created_at, r.id.clone())
    })))
}

/// `None` if the store does not exist. Products are keyed by their numeric id: the
/// cursor is (created_at, numeric id), and so is the `ListCursor` returned.
pub async fn list_products(
    db: &Db,
    store: &StoreId,
    after: Option<(i64, i64)>,
    page_size: i64,
) -> Page<Product> {
    let (rows, active) = with_conn!(db, |conn| {
        if !store_exists!(conn, store.as_str()) {
            return Ok(None);
        }
        let q = products::table
            .filter(products::store_id.eq(store.as_str()))
            .select(ProductRow::as_select());
        let rows: Vec<ProductRow> = newest_first!(products, q, after, page_size)
            .load(conn)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let active: Vec<(i64, String, String)> = product_activations::table
            .filter(product_activations::product_id.eq_any(&ids))
            .select((
                product_activations::product_id,
                product_activations::environment,
                product_activations::product_version_id,
            ))
            .load(conn)
            .await?;
        (rows, active)
    });
    let (rows, next) = page(rows, page_size, |r| (r.created_at, r.id.to_string()));
    let version_in = |product: i64, env: Environment| {
        active
            .iter()
            .find(|(p, e, _)| *p == product && e == env.as_str())
            .map(|(_, _, v)| v.clone())
    };
    let products = rows
        .into_iter()
        .map(|row| Product {
            id: ProductId::from_db(row.id).short_id(),
            active_test_version_id: version_in(row.id, Environment::Test),
            active_prod_version_id: version_in(row.id, Environment::Prod),
            store_id: row.store_id,
            name: row.name,
            description: row.description,
            requires_server_selection: row.requires_server_selection,
            active: row.active,
            created_at: row.created_at,
        })
        .collect();
    Ok(Some((products, next)))
}

/// `None` if the store does not exist.
pub async fn list_coupons(
    db: &Db,
    store: &StoreId,
    after: Option<&ListCursor>,
    page_size: i64,
) -> Page<CouponRow> {
    let rows: Vec<CouponRow> = with_conn!(db, |conn| {
        if !store_exists!(conn, store.as_str()) {
            return Ok(None);
        }
        let q = coupons::table
            .filter(coupons::store_id.eq(store.as_str()))
            .select(CouponRow::as_select());
        newest_first!(coupons, q, text_cursor(after), page_size)
            .load(conn)
            .await?
    });
    Ok(Some(page(rows, page_size, |r| {
        (r.created_at, r.id.clone())
    })))
}

/// Activates or deactivates a coupon; `None` if it is unknown. Sessions holding it keep
/// their reservation: completion never looks at `active`.
pub async fn set_coupon_active(
    db: &Db,
    id: &CouponId,
    active: bool,
) -> AppResult<Option<CouponRow>> {
    with_tx!(db, |conn| {
        diesel::update(coupons::table.find(id.as_str()))
            .set(coupons::active.eq(active))
            .execute(conn)
            .await?;
        Ok(coupons::table
            .find(id.as_str())
            .select(CouponRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}
