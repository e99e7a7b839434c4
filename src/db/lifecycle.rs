//! How sessions end. Each transition is one conditional UPDATE `… WHERE status = 'open'`,
//! so of racing transitions (two payments, payment vs cancel, payment vs expiry, on one
//! replica or many) exactly one changes the row; the others see that it already ended.
//! Ending a session other than by payment releases its coupon reservation in the same
//! transaction.
use super::{
    feed::{FeedBatch, RecordFeed},
    outbox,
    schema::{coupons, orders, sessions},
    sessions::SessionRow,
    Db,
};
use crate::{
    domain::{
        feed::EventKind,
        ids::OrderId,
        ids::SessionId,
        session_state::{Status, ENDING_MARGIN_MICROS},
        time::Timestamp,
    },
    error::AppResult,
};
use diesel::{prelude::*, sql_types::BigInt};
use diesel_async::RunQueryDsl;
use std::collections::BTreeMap;

/// Gives back one coupon redemption per ended session that held one.
macro_rules! release_coupons {
    ($conn:ident, $coupon_ids:expr) => {{
        // In id order, so transactions releasing several coupons lock them in one order and
        // cannot deadlock each other.
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        for id in $coupon_ids {
            *counts.entry(id).or_default() += 1;
        }
        for (id, n) in counts {
            diesel::update(coupons::table.find(&id))
                .set(coupons::redemptions.eq(coupons::redemptions - n))
                .execute($conn)
                .await?;
        }
    }};
}

/// Completes an open, unexpired session and creates its order; `None` if the session was
/// not open (or is past its expiry), in which case nothing changed.
pub async fn complete(
    db: &Db,
    id: &SessionId,
    payment_reference: &str,
) -> AppResult<Option<SessionRow>> {
    let order_id = OrderId::generate().to_string();
    with_tx!(db, |conn| {
        // The clock is read inside the transaction (after any wait for a lock or a
        // connection), and the expiry margin applies: see ENDING_MARGIN_MICROS.
        let now = Timestamp::now();
        let Some(s) = diesel::update(
            sessions::table
                .find(id.as_str())
                .filter(sessions::status.eq(Status::Open.as_str()))
                .filter(sessions::expires_at.gt(now.0 + ENDING_MARGIN_MICROS)),
        )
        .set((
            sessions::status.eq(Status::Completed.as_str()),
            sessions::order_id.eq(&order_id),
            sessions::completed_at.eq(now.0),
            sessions::ended_at.eq(now.0),
        ))
        .returning(SessionRow::as_returning())
        .get_result(conn)
        .await
        .optional()?
        else {
            return Ok(None);
        };
        // The unique index on orders.session_id backs the guarantee: one order per session.
        diesel::insert_into(orders::table)
            .values((
                orders::id.eq(&order_id),
                orders::session_id.eq(&s.id),
                orders::store_id.eq(&s.store_id),
                orders::environment.eq(&s.environment),
                orders::currency.eq(&s.currency),
                orders::amount_subtotal.eq(s.amount_subtotal),
                orders::amount_discount.eq(s.amount_discount),
                orders::amount_total.eq(s.amount_total),
                orders::payment_reference.eq(payment_reference),
                orders::order_merchant_external_id.eq(&s.order_merchant_external_id),
                orders::created_at.eq(now.0),
            ))
            .execute(conn)
            .await?;
        let lines = lines_of!(conn, [s.id.as_str()])
            .remove(&s.id)
            .unwrap_or_default();
        record_event!(
            conn,
            &outbox::event(outbox::ORDER_COMPLETED, &s, &lines, now)?
        );
        // The feed's event, in the same transaction (db::feed).
        let feed = FeedBatch::new(&s.store_id, &s.environment, now.0);
        conn.record_feed(&feed.with(EventKind::Completed, &s.id))
            .await?;
        Ok(Some(s))
    })
}

/// The payment reference of a session's order, if it has one.
pub async fn payment_reference(db: &Db, id: &SessionId) -> AppResult<Option<String>> {
    with_conn!(db, |conn| {
        Ok(orders::table
            .filter(orders::session_id.eq(id.as_str()))
            .select(orders::payment_reference)
            .first::<Option<String>>(conn)
            .await
            .optional()?
            .flatten())
    })
}

/// Until when, relative to its expiry, a session may still be ended a given way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Up to ENDING_MARGIN_MICROS before expiry: an ending other than EXPIRED (a cancel).
    MarginBeforeExpiry,
    /// Up to expiry: ExpireSession (past it, the session reads as expired already).
    Expiry,
}

/// Ends an open session as CANCELLED or EXPIRED and releases its coupon; `false` if it was
/// not open, or too close to or past its expiry (nothing changed). Callers check tenancy
/// first: a session's store and environment never change.
///
/// The status condition sits in the UPDATE's own WHERE (no subquery) so that Postgres
/// re-checks it against the row as a concurrent transaction left it.
pub async fn end(db: &Db, id: &SessionId, to: Status, until: Until) -> AppResult<bool> {
    with_tx!(db, |conn| {
        let now = Timestamp::now();
        let expires_after = match until {
            Until::MarginBeforeExpiry => now.0 + ENDING_MARGIN_MICROS,
            Until::Expiry => now.0,
        };
        let ended: Option<SessionRow> = diesel::update(
            sessions::table
                .find(id.as_str())
                .filter(sessions::status.eq(Status::Open.as_str()))
                .filter(sessions::expires_at.gt(expires_after)),
        )
        .set((
            sessions::status.eq(to.as_str()),
            sessions::ended_at.eq(now.0),
        ))
        .returning(SessionRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        let Some(s) = ended else {
            return Ok(false);
        };
        release_coupons!(conn, s.coupon_id.iter().cloned());
        if to == Status::Expired {
            let lines = lines_of!(conn, [s.id.as_str()])
                .remove(&s.id)
                .unwrap_or_default();
            record_event!(
                conn,
                &outbox::event(outbox::SESSION_EXPIRED, &s, &lines, now)?
            );
        }
        // The feed's event, in the same transaction (db::feed).
        let kind = if to == Status::Expired {
            EventKind::Expired
        } else {
            EventKind::Cancelled
        };
        let feed = FeedBatch::new(&s.store_id, &s.environment, now.0);
        conn.record_feed(&feed.with(kind, &s.id)).await?;
        Ok(true)
    })
}

/// One sweep: expires up to `batch` open sessions past their expiry and releases their
/// coupons; returns their ids. On Postgres the rows are claimed with `FOR UPDATE SKIP
/// LOCKED`, so replicas sweeping at once split the work instead of queuing on it (and the
/// `status = 'open'` condition makes each expiry happen once either way).
pub async fn sweep_expired(db: &Db, now: Timestamp, batch: i64) -> AppResult<Vec<String>> {
    // A read first: most sweeps find nothing, and should not take SQLite's write lock.
    let due: Option<String> = with_conn!(db, |conn| {
        sessions::table
            .filter(sessions::status.eq(Status::Open.as_str()))
            .filter(sessions::expires_at.le(now.0))
            .select(sessions::id)
            .first(conn)
            .await
            .optional()?
    });
    if due.is_none() {
        return Ok(Vec::new());
    }
    let lock = db.skip_locked();
    // `$1` is the same bind on both backends (SQLite reads it as a named parameter).
    let claim = format!(
        "UPDATE sessions SET status = 'expired', ended_at = $1 \
         WHERE status = 'open' AND expires_at <= $1 AND id IN \
         (SELECT id FROM sessions WHERE status = 'open' AND expires_at <= $1 \
          ORDER BY expires_at LIMIT {batch} {lock}) RETURNING *"
    );
    with_tx!(db, |conn| {
        let expired: Vec<SessionRow> = diesel::sql_query(claim.as_str())
            .bind::<BigInt, _>(now.0)
            .load(conn)
            .await?;
        release_coupons!(conn, expired.iter().filter_map(|s| s.coupon_id.clone()));
        let ids: Vec<&str> = expired.iter().map(|s| s.id.as_str()).collect();
        let mut lines = lines_of!(conn, ids);
        for s in &expired {
            let lines = lines.remove(&s.id).unwrap_or_default();
            record_event!(
                conn,
                &outbox::event(outbox::SESSION_EXPIRED, s, &lines, now)?
            );
        }
        // The feed's events, one statement per feed (db::feed), in (store, environment)
        // order: on SQLite each takes that feed's counter row.
        let mut feeds: BTreeMap<(&str, &str), FeedBatch> = BTreeMap::new();
        for s in &expired {
            feeds
                .entry((s.store_id.as_str(), s.environment.as_str()))
                .or_insert_with(|| FeedBatch::new(&s.store_id, &s.environment, now.0))
                .events
                .push((EventKind::Expired.as_str(), s.id.clone()));
        }
        for feed in feeds.values() {
            conn.record_feed(feed).await?;
        }
        Ok(expired.into_iter().map(|s| s.id).collect())
    })
}

/// Deletes up to `batch` idempotency keys created before `cutoff`; returns how many.
///
/// Built to stay cheap without planner statistics (autovacuum may be off): a read of the
/// first entry of the `created_at` index decides whether there is anything to do, and the
/// delete picks its rows by that index (`ORDER BY created_at LIMIT`) and removes them by
/// physical row id (Postgres `ctid`, SQLite `rowid`), never by scanning the table. On
/// Postgres, `SKIP LOCKED` lets replicas purging at once split the work.
pub async fn purge_idempotency_keys(db: &Db, cutoff: Timestamp, batch: i64) -> AppResult<usize> {
    use super::schema::idempotency_keys;
    let oldest: Option<i64> = with_conn!(db, |conn| {
        idempotency_keys::table
            .select(idempotency_keys::created_at)
            .order(idempotency_keys::created_at.asc())
            .first(conn)
            .await
            .optional()?
    });
    if oldest.is_none_or(|t| t >= cutoff.0) {
        return Ok(0);
    }
    let delete = match db.backend() {
        super::Backend::Postgres => format!(
            "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY( \
             SELECT ctid FROM idempotency_keys WHERE created_at < $1 \
             ORDER BY created_at LIMIT {batch} FOR UPDATE SKIP LOCKED))"
        ),
        super::Backend::Sqlite => format!(
            "DELETE FROM idempotency_keys WHERE rowid IN ( \
             SELECT rowid FROM idempotency_keys WHERE created_at < $1 \
             ORDER BY created_at LIMIT {batch})"
        ),
    };
    with_tx!(db, |conn| {
        Ok(diesel::sql_query(delete.as_str())
            .bind::<BigInt, _>(cutoff.0)
            .execute(conn)
            .await?)
    })
}
