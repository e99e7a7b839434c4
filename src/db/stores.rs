//! `stores` and `store_return_origins`.
use super::{
    or_conflict,
    schema::{store_return_origins, stores},
    Db, InsertBatch,
};
use crate::{
    domain::{
        ids::StoreId,
        store::{NewStore, Origin, StorePatch},
        time::Timestamp,
    },
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = stores, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct StoreRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub active: bool,
    pub approved_for_prod: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A store with its allowed return origins.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Store {
    #[serde(flatten)]
    pub row: StoreRow,
    pub allowed_return_origins: Vec<String>,
}

/// Replaces a store's origins; a statement fragment shared by the transactions below
/// (a macro, so it is type-checked against both backends like the bodies it sits in).
macro_rules! replace_origins {
    ($conn:ident, $store_id:expr, $origins:expr) => {{
        let store_id: &str = $store_id;
        diesel::delete(
            store_return_origins::table.filter(store_return_origins::store_id.eq(store_id)),
        )
        .execute($conn)
        .await?;
        let rows: Vec<_> = $origins
            .iter()
            .map(|o: &String| {
                (
                    store_return_origins::store_id.eq(store_id.to_owned()),
                    store_return_origins::origin.eq(o.clone()),
                )
            })
            .collect();
        if !rows.is_empty() {
            $conn
                .insert_batch(diesel::insert_into(store_return_origins::table).values(rows))
                .await?;
        }
    }};
}

const SLUG_TAKEN: &str = "A store with this slug already exists";

pub async fn create(db: &Db, new: &NewStore) -> AppResult<Store> {
    let now = Timestamp::now().0;
    let row = StoreRow {
        id: StoreId::generate().to_string(),
        slug: new.slug.as_str().to_owned(),
        name: new.name.clone(),
        active: new.active,
        approved_for_prod: new.approved_for_prod,
        created_at: now,
        updated_at: now,
    };
    let origins: Vec<String> = new.origins.iter().map(|o| o.as_str().to_owned()).collect();
    with_tx!(db, |conn| {
        diesel::insert_into(stores::table)
            .values(&row)
            .execute(conn)
            .await
            .map_err(or_conflict(SLUG_TAKEN))?;
        replace_origins!(conn, &row.id, &origins);
        Ok(())
    })?;
    Ok(Store {
        row,
        allowed_return_origins: origins,
    })
}

pub async fn get(db: &Db, id: &StoreId) -> AppResult<Option<Store>> {
    with_conn!(db, |conn| {
        let Some(row) = stores::table
            .find(id.as_str())
            .select(StoreRow::as_select())
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        let origins = store_return_origins::table
            .filter(store_return_origins::store_id.eq(&row.id))
            .select(store_return_origins::origin)
            .order(store_return_origins::origin)
            .load(conn)
            .await?;
        Ok(Some(Store {
            row,
            allowed_return_origins: origins,
        }))
    })
}

/// The store behind a publishable slug (for storefront auth).
pub async fn find_by_slug(db: &Db, slug: &str) -> AppResult<Option<StoreRow>> {
    with_conn!(db, |conn| {
        Ok(stores::table
            .filter(stores::slug.eq(slug))
            .select(StoreRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The allowed return origins of the store behind a slug (empty when there is none): the
/// origins a browser storefront of that store may call from (SPEC §12).
pub async fn origins_by_slug(db: &Db, slug: &str) -> AppResult<Vec<String>> {
    with_conn!(db, |conn| {
        Ok(store_return_origins::table
            .inner_join(stores::table)
            .filter(stores::slug.eq(slug))
            .select(store_return_origins::origin)
            .load(conn)
            .await?)
    })
}

/// Applies the fields named in `patch`; `None` when the store does not exist.
pub async fn update(db: &Db, id: &StoreId, patch: &StorePatch) -> AppResult<Option<Store>> {
    #[derive(AsChangeset)]
    #[diesel(table_name = stores)]
    struct Changes<'a> {
        slug: Option<&'a str>,
        name: Option<&'a str>,
        active: Option<bool>,
        approved_for_prod: Option<bool>,
        updated_at: i64,
    }
    let changes = Changes {
        slug: patch.slug.as_ref().map(|s| s.as_str()),
        name: patch.name.as_deref(),
        active: patch.active,
        approved_for_prod: patch.approved_for_prod,
        updated_at: Timestamp::now().0,
    };
    let origins: Option<Vec<String>> = patch
        .origins
        .as_ref()
        .map(|os| os.iter().map(|o: &Origin| o.as_str().to_owned()).collect());
    let found = with_tx!(db, |conn| {
        let n = diesel::update(stores::table.find(id.as_str()))
            .set(&changes)
            .execute(conn)
            .await
            .map_err(or_conflict(SLUG_TAKEN))?;
        if n == 0 {
            return Ok(false);
        }
        if let Some(origins) = &origins {
            replace_origins!(conn, id.as_str(), origins);
        }
        Ok(true)
    })?;
    if found {
        get(db, id).await
    } else {
        Ok(None)
    }
}

/// Whether the database holds any store (the demo seed only fills an empty one).
pub async fn any_exist(db: &Db) -> AppResult<bool> {
    with_conn!(db, |conn| {
        let n: i64 = stores::table.count().get_result(conn).await?;
        Ok(n > 0)
    })
}
