//! The webhook outbox: events (written by `record_event!` with the state change that causes
//! them) and delivery jobs, which dispatchers on any replica claim under a lease.
use super::{
    schema::{webhook_deliveries, webhook_endpoints, webhook_events, webhook_outbox},
    sessions::{LineRow, SessionRow},
    Db,
};
use crate::{
    domain::{
        ids::{ProductId, WebhookDeliveryId, WebhookEventId},
        time::Timestamp,
    },
    error::{AppError, AppResult},
};
use diesel::{prelude::*, sql_types, QueryableByName};
use diesel_async::RunQueryDsl;
use serde_json::json;

pub const ORDER_COMPLETED: &str = "order.completed";
pub const SESSION_EXPIRED: &str = "checkout.session.expired";

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_events, treat_none_as_default_value = false)]
pub struct EventRow {
    pub id: String,
    pub store_id: String,
    pub environment: String,
    pub event_type: String,
    pub session_id: String,
    pub payload: String,
    pub created_at: i64,
}

fn rfc3339(t: i64) -> String {
    crate::grpc::convert::timestamp(t).to_string()
}

/// The event for a session's ending: its JSON is fixed here, once, and is the exact body
/// every delivery POSTs and signs.
pub fn event(kind: &str, s: &SessionRow, lines: &[LineRow], now: Timestamp) -> AppResult<EventRow> {
    let id = WebhookEventId::generate().to_string();
    let lines: Vec<_> = lines
        .iter()
        .map(|l| {
            json!({
                "product_id": l.product_id.map(|p| ProductId::from_db(p).short_id()),
                "product_version_id": l.product_version_id,
                "product_name": l.product_name,
                "unit_amount": l.unit_amount,
                "quantity": l.quantity,
                "amount_total": l.amount_total,
                "billing_period": l.billing_period,
            })
        })
        .collect();
    // The SPEC names the session, order and amounts as payload fields, and the issue puts
    // them under `data`: both are there, with the same values.
    let body = json!({
        "id": id,
        "type": kind,
        "created_at": rfc3339(now.0),
        "environment": s.environment,
        "checkout_session_id": s.id,
        "order_id": s.order_id,
        "order_merchant_external_id": s.order_merchant_external_id,
        "currency": s.currency,
        "amount_subtotal": s.amount_subtotal,
        "amount_discount": s.amount_discount,
        "amount_total": s.amount_total,
        "data": {
            "checkout_session_id": s.id,
            "store_id": s.store_id,
            "status": s.status,
            "order_id": s.order_id,
            "order_merchant_external_id": s.order_merchant_external_id,
            "customer_id": s.customer_id,
            "currency": s.currency,
            "amount_subtotal": s.amount_subtotal,
            "amount_discount": s.amount_discount,
            "amount_total": s.amount_total,
            "lines": lines,
        }
    });
    Ok(EventRow {
        id,
        store_id: s.store_id.clone(),
        environment: s.environment.clone(),
        event_type: kind.to_owned(),
        session_id: s.id.clone(),
        payload: serde_json::to_string(&body)
            .map_err(|e| AppError::internal(format!("event JSON: {e}")))?,
        created_at: now.0,
    })
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = sql_types::Text)]
    event_id: String,
    #[diesel(sql_type = sql_types::Text)]
    endpoint_id: String,
}

/// A claimed delivery job, with what is needed to send it. (No Debug: it holds the
/// endpoint's secret.)
#[derive(Clone, Queryable)]
pub struct Job {
    pub event_id: String,
    pub endpoint_id: String,
    pub attempts: i32,
    pub lease_until: Option<i64>,
    pub event_type: String,
    pub payload: String,
    pub store_id: String,
    pub environment: String,
    pub url: String,
    pub secret: String,
    pub endpoint_disabled_at: Option<i64>,
    /// The secret a rotation replaced (sealed) and until when it also signs.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
}

/// Claims up to `limit` due jobs until `lease_until`. On Postgres rows are taken with
/// `FOR UPDATE SKIP LOCKED`, so dispatchers on several replicas never claim the same job;
/// on SQLite the claim runs under the single writer lock.
pub async fn claim(db: &Db, now: Timestamp, lease_until: i64, limit: i64) -> AppResult<Vec<Job>> {
    let due: Option<String> = with_conn!(db, |conn| {
        webhook_outbox::table
            .filter(webhook_outbox::state.eq("pending"))
            .filter(webhook_outbox::next_attempt_at.le(now.0))
            .filter(
                webhook_outbox::lease_until
                    .is_null()
                    .or(webhook_outbox::lease_until.le(now.0)),
            )
            .select(webhook_outbox::event_id)
            .first(conn)
            .await
            .optional()?
    });
    if due.is_none() {
        return Ok(Vec::new());
    }
    let lock = db.skip_locked();
    let due = "state = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)";
    // SQLite numbers `$N` parameters by their first appearance in the text, Postgres by N:
    // `$1` must appear before `$2` for one bind order to suit both.
    let sql = format!(
        "UPDATE webhook_outbox SET updated_at = $1, lease_until = $2 WHERE {due} AND (event_id, endpoint_id) IN \
         (SELECT event_id, endpoint_id FROM webhook_outbox WHERE {due} ORDER BY next_attempt_at LIMIT {limit} {lock}) \
         RETURNING event_id, endpoint_id"
    );
    with_tx!(db, |conn| {
        let claimed: Vec<Claimed> = diesel::sql_query(sql.as_str())
            .bind::<sql_types::BigInt, _>(now.0)
            .bind::<sql_types::BigInt, _>(lease_until)
            .load(conn)
            .await?;
        let event_ids: Vec<&str> = claimed.iter().map(|c| c.event_id.as_str()).collect();
        let jobs: Vec<Job> = webhook_outbox::table
            .inner_join(webhook_events::table)
            .inner_join(webhook_endpoints::table)
            .filter(webhook_outbox::event_id.eq_any(&event_ids))
            .filter(webhook_outbox::lease_until.eq(lease_until))
            .select((
                webhook_outbox::event_id,
                webhook_outbox::endpoint_id,
                webhook_outbox::attempts,
                webhook_outbox::lease_until,
                webhook_events::event_type,
                webhook_events::payload,
                webhook_events::store_id,
                webhook_events::environment,
                webhook_endpoints::url,
                webhook_endpoints::secret,
                webhook_endpoints::disabled_at,
                webhook_endpoints::previous_secret,
                webhook_endpoints::previous_secret_expires_at,
            ))
            .load(conn)
            .await?;
        // Exactly the pairs this claim took, whatever else shares an event or a lease time.
        Ok(jobs
            .into_iter()
            .filter(|j| {
                claimed
                    .iter()
                    .any(|c| c.event_id == j.event_id && c.endpoint_id == j.endpoint_id)
            })
            .collect())
    })
}

/// One delivery attempt, for the delivery log.
pub struct Attempt {
    pub response_status: Option<i32>,
    pub success: bool,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// What becomes of a job after an attempt (or instead of one).
pub enum Next {
    Delivered,
    RetryAt(i64),
    /// Out of attempts.
    Failed,
    /// The endpoint is disabled (410 Gone now, or earlier).
    Disabled,
}

/// Records the attempt (if one was made) and the job's next state; `disable_endpoint` on a
/// 410. The lease is the fencing token: a dispatcher whose lease ran out (and whose job
/// another took over) writes the log line but no longer moves the job.
pub async fn finish(
    db: &Db,
    job: &Job,
    attempt: Option<Attempt>,
    next: Next,
    disable_endpoint: bool,
    now: Timestamp,
) -> AppResult<()> {
    let attempts = job.attempts + i32::from(attempt.is_some());
    let (state, next_at) = match next {
        Next::Delivered => ("delivered", now.0),
        Next::RetryAt(t) => ("pending", t),
        Next::Failed => ("failed", now.0),
        Next::Disabled => ("disabled", now.0),
    };
    with_tx!(db, |conn| {
        diesel::update(
            webhook_outbox::table
                .find((&job.event_id, &job.endpoint_id))
                .filter(webhook_outbox::lease_until.eq(job.lease_until)),
        )
        .set((
            webhook_outbox::state.eq(state),
            webhook_outbox::attempts.eq(attempts),
            webhook_outbox::next_attempt_at.eq(next_at),
            webhook_outbox::lease_until.eq(None::<i64>),
            webhook_outbox::updated_at.eq(now.0),
        ))
        .execute(conn)
        .await?;
        if let Some(a) = &attempt {
            diesel::insert_into(webhook_deliveries::table)
                .values((
                    webhook_deliveries::id.eq(WebhookDeliveryId::generate().to_string()),
                    webhook_deliveries::store_id.eq(&job.store_id),
                    webhook_deliveries::endpoint_id.eq(&job.endpoint_id),
                    webhook_deliveries::event_id.eq(&job.event_id),
                    webhook_deliveries::event_type.eq(&job.event_type),
                    webhook_deliveries::attempt.eq(attempts),
                    webhook_deliveries::response_status.eq(a.response_status),
                    webhook_deliveries::success.eq(a.success),
                    webhook_deliveries::error.eq(&a.error),
                    webhook_deliveries::duration_ms.eq(a.duration_ms),
                    webhook_deliveries::attempted_at.eq(now.0),
                ))
                .execute(conn)
                .await?;
        }
        if disable_endpoint {
            diesel::update(
                webhook_endpoints::table
                    .find(&job.endpoint_id)
                    .filter(webhook_endpoints::disabled_at.is_null()),
            )
            .set(webhook_endpoints::disabled_at.eq(now.0))
            .execute(conn)
            .await?;
        }
        Ok(())
    })
}

/// Deliveries waiting to be sent (for the metrics).
pub async fn backlog(db: &Db) -> AppResult<i64> {
    with_conn!(db, |conn| {
        Ok(webhook_outbox::table
            .filter(webhook_outbox::state.eq("pending"))
            .count()
            .get_result(conn)
            .await?)
    })
}
