//! `webhook_endpoints` and the delivery log `webhook_deliveries`.
use super::{
    schema::{webhook_deliveries, webhook_endpoints},
    Db,
};
use crate::{
    domain::{
        ids::{StoreId, WebhookEndpointId},
        time::Timestamp,
        webhook::WebhookUrl,
        Environment,
    },
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

// No Debug: it holds the signing secret.
#[derive(Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct EndpointRow {
    pub id: String,
    pub store_id: String,
    pub environment: String,
    pub url: String,
    /// Sealed (`crate::secrets`); never serialized.
    #[serde(skip)]
    pub secret: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// Comma-separated event types; empty: every type (`crate::domain::webhook::EventTypes`).
    pub event_types: String,
    /// Sealed with `crate::db::secrets::previous_aad`; signs too until the expiry below.
    #[serde(skip)]
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct DeliveryRow {
    pub id: String,
    pub store_id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    pub response_status: Option<i32>,
    pub success: bool,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub attempted_at: i64,
}

/// `None` if the store does not exist. `sealed_secret` is the signing secret sealed for
/// this endpoint id (`crate::db::secrets::endpoint_aad`): the plaintext is never stored.
pub async fn create_endpoint(
    db: &Db,
    id: &WebhookEndpointId,
    store_id: &StoreId,
    env: Environment,
    url: &WebhookUrl,
    sealed_secret: String,
) -> AppResult<Option<EndpointRow>> {
    let row = EndpointRow {
        id: id.to_string(),
        store_id: store_id.to_string(),
        environment: env.as_str().to_owned(),
        url: url.as_str().to_owned(),
        secret: sealed_secret,
        created_at: Timestamp::now().0,
        disabled_at: None,
        event_types: String::new(),
        previous_secret: None,
        previous_secret_expires_at: None,
        deleted_at: None,
    };
    with_tx!(db, |conn| {
        if !store_exists!(conn, store_id.as_str()) {
            return Ok(None);
        }
        diesel::insert_into(webhook_endpoints::table)
            .values(&row)
            .execute(conn)
            .await?;
        Ok(Some(row.clone()))
    })
}

/// Where a page of the delivery log starts: strictly older than this entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCursor {
    pub attempted_at: i64,
    pub id: String,
}

/// One page of a store's delivery log, newest first; the cursor of the next page if any.
pub async fn list_deliveries(
    db: &Db,
    store_id: &StoreId,
    endpoint_id: Option<&WebhookEndpointId>,
    page_size: i64,
    after: Option<&DeliveryCursor>,
) -> AppResult<(Vec<DeliveryRow>, Option<DeliveryCursor>)> {
    let mut rows: Vec<DeliveryRow> = with_conn!(db, |conn| {
        let mut q = webhook_deliveries::table
            .filter(webhook_deliveries::store_id.eq(store_id.as_str()))
            .select(DeliveryRow::as_select())
            .order((
                webhook_deliveries::attempted_at.desc(),
                webhook_deliveries::id.desc(),
            ))
            .limit(page_size + 1)
            .into_boxed();
        if let Some(endpoint) = endpoint_id {
            q = q.filter(webhook_deliveries::endpoint_id.eq(endpoint.as_str()));
        }
        if let Some(c) = after {
            q = q.filter(
                webhook_deliveries::attempted_at.lt(c.attempted_at).or(
                    webhook_deliveries::attempted_at
                        .eq(c.attempted_at)
                        .and(webhook_deliveries::id.lt(c.id.clone())),
                ),
            );
        }
        q.load(conn).await?
    });
    let next = if rows.len() as i64 > page_size {
        rows.truncate(page_size as usize);
        rows.last().map(|r| DeliveryCursor {
            attempted_at: r.attempted_at,
            id: r.id.clone(),
        })
    } else {
        None
    };
    Ok((rows, next))
}
