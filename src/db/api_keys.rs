//! `api_keys`: only the SHA-256 of a secret is ever stored.
use super::{
    schema::{api_keys, stores},
    stored, Db,
};
use crate::{
    domain::{ids::ApiKeyId, ids::StoreId, time::Timestamp, Environment},
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = api_keys, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ApiKeyRow {
    pub id: String,
    pub store_id: String,
    pub environment: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The key's first characters (`ApiKeySecret::prefix`); empty for keys made before
    /// it was recorded.
    pub secret_prefix: String,
}

impl ApiKeyRow {
    pub fn environment(&self) -> AppResult<Environment> {
        stored("api_keys.environment", self.environment.parse().ok())
    }
}

/// Records a new key for an existing store; `None` if the store does not exist.
pub async fn create(
    db: &Db,
    store_id: &StoreId,
    env: Environment,
    secret_hash: String,
    secret_prefix: String,
) -> AppResult<Option<ApiKeyRow>> {
    let row = ApiKeyRow {
        id: ApiKeyId::generate().to_string(),
        store_id: store_id.to_string(),
        environment: env.as_str().to_owned(),
        secret_hash,
        created_at: Timestamp::now().0,
        revoked_at: None,
        secret_prefix,
    };
    with_tx!(db, |conn| {
        if !store_exists!(conn, store_id.as_str()) {
            return Ok(None);
        }
        diesel::insert_into(api_keys::table)
            .values(&row)
            .execute(conn)
            .await?;
        Ok(Some(row.clone()))
    })
}

/// Revokes a key (idempotent: a second revoke keeps the first time); `None` if unknown.
pub async fn revoke(db: &Db, id: &ApiKeyId) -> AppResult<Option<ApiKeyRow>> {
    let now = Timestamp::now().0;
    with_tx!(db, |conn| {
        diesel::update(
            api_keys::table
                .find(id.as_str())
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(now))
        .execute(conn)
        .await?;
        Ok(api_keys::table
            .find(id.as_str())
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The key with this hash and its store, for authentication.
pub async fn find_by_hash(
    db: &Db,
    secret_hash: &str,
) -> AppResult<Option<(ApiKeyRow, super::stores::StoreRow)>> {
    with_conn!(db, |conn| {
        Ok(api_keys::table
            .inner_join(stores::table)
            .filter(api_keys::secret_hash.eq(secret_hash))
            .select((ApiKeyRow::as_select(), super::stores::StoreRow::as_select()))
            .first(conn)
            .await
            .optional()?)
    })
}
