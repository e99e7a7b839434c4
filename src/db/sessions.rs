//! `sessions` and `session_lines`.
use super::{
    schema::{session_lines, sessions},
    Db,
};
use crate::{
    domain::{ids::SessionId, ids::StoreId, Environment},
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct SessionRow {
    pub id: String,
    pub store_id: String,
    pub environment: String,
    pub status: String,
    pub currency: String,
    pub amount_subtotal: i64,
    pub amount_discount: i64,
    pub amount_total: i64,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub auto_redirect: bool,
    pub customer_id: Option<String>,
    pub buyer_email: Option<String>,
    pub billing_detail: Option<String>,
    pub metadata: String,
    pub order_merchant_external_id: Option<String>,
    pub affiliate_code: Option<String>,
    pub coupon_id: Option<String>,
    pub coupon_code: Option<String>,
    pub store_name: String,
    pub with_trial: bool,
    pub client_token: String,
    pub order_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub completed_at: Option<i64>,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = session_lines, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct LineRow {
    pub session_id: String,
    pub position: i32,
    pub product_id: Option<i64>,
    pub product_version_id: Option<String>,
    pub product_name: String,
    pub unit_amount: i64,
    pub quantity: i32,
    pub amount_total: i64,
    pub billing_period: String,
    pub trial_days: i32,
    pub subscription: bool,
    pub server_id: Option<String>,
    pub gift_to_platform: Option<String>,
    pub gift_to_id: Option<String>,
    pub custom_variables: String,
    pub metadata: String,
}

/// A session with its locked lines, in line order.
pub struct StoredSession {
    pub session: SessionRow,
    pub lines: Vec<LineRow>,
}

/// The session if it belongs to this store and environment. Any other session is
/// indistinguishable from one that does not exist.
pub async fn get(
    db: &Db,
    id: &SessionId,
    store: &StoreId,
    env: Environment,
) -> AppResult<Option<StoredSession>> {
    with_conn!(db, |conn| {
        let Some(session) = sessions::table
            .find(id.as_str())
            .filter(sessions::store_id.eq(store.as_str()))
            .filter(sessions::environment.eq(env.as_str()))
            .select(SessionRow::as_select())
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        let lines = session_lines::table
            .filter(session_lines::session_id.eq(id.as_str()))
            .order(session_lines::position)
            .select(LineRow::as_select())
            .load(conn)
            .await?;
        Ok(Some(StoredSession { session, lines }))
    })
}
