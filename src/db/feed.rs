//! The event feed's storage (SPEC §11): writing events in the transaction of the change
//! they record, reading a page after a position, and the retention purge.
//!
//! Why positions are in commit order (the feed's central promise): a writer takes its
//! positions from the store's `event_counters` row with an upsert that is its transaction's
//! last statement before COMMIT, so it holds that row's lock until it commits. A concurrent
//! writer of the same store and environment waits on the row, reads the committed value and
//! takes the next positions, and can commit only after. So a reader can never see position
//! n+1 without n: there are no gaps (a rolled-back writer rolls back its increment too) and
//! no late commits behind a position already read. A sequence (`bigserial`) would not do:
//! ids are handed out at insert and committed in any order. On SQLite there is one writer at
//! a time, and the same counter is trivially in commit order.
//!
//! Transactions that write events of several stores (the sweeper) take the counters in
//! (store, environment) order, and every writer takes its counter after any other lock it
//! needs (sessions, coupons), so counters cannot deadlock.
use super::{
    schema::{event_counters, feed_events, sessions},
    sessions::{SessionRow, StoredSession},
    Db,
};
use crate::{
    domain::{feed::EventKind, ids::StoreId, session_state::Status, Environment},
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

mod write;
pub use write::{FeedBatch, RecordFeed};

/// One event as read, with the session as of that event.
pub struct FeedEvent {
    pub position: i64,
    pub kind: EventKind,
    pub occurred_at: i64,
    pub stored: StoredSession,
}

/// Where a feed stands: its last position and the highest position the purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    pub last: i64,
    pub purged_through: i64,
}

/// What a read after a position found.
pub enum Read {
    Events(Vec<FeedEvent>),
    /// The position is past the end of this feed: no cursor of this feed names it.
    Unknown,
    /// Events after the position were purged: resuming from it would skip them.
    Expired,
}

/// (last position, purged through) of a feed's counter row, on an open connection; the one
/// query `head` and `read_after` share.
macro_rules! head_row {
    ($conn:ident, $store:expr, $env:expr) => {{
        let row: Option<(i64, i64)> = event_counters::table
            .find(($store.as_str(), $env.as_str()))
            .select((
                event_counters::last_position,
                event_counters::purged_through,
            ))
            .first($conn)
            .await
            .optional()?;
        row
    }};
}

/// The head of a feed ((0, 0) before its first event).
pub async fn head(db: &Db, store: &StoreId, env: Environment) -> AppResult<Head> {
    with_conn!(db, |conn| {
        let row = head_row!(conn, store, env);
        Ok(row
            .map(|(last, purged_through)| Head {
                last,
                purged_through,
            })
            .unwrap_or_default())
    })
}

type PageRow = (i64, String, i64, SessionRow);

/// Up to `limit` events after `after` (`None`: from the oldest retained), in position
/// order, of the given kinds (all if empty). The events are read by primary key range; the
/// head is read after them, so a purge that ran in between is seen (and answered
/// `Expired`) rather than skipped over.
pub async fn read_after(
    db: &Db,
    store: &StoreId,
    env: Environment,
    start: Option<i64>,
    kinds: &[EventKind],
    limit: i64,
) -> AppResult<Read> {
    let types: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let after = start.unwrap_or(0);
    let (rows, head, mut lines) = with_conn!(db, |conn| {
        // An inner join: sessions are never deleted, so every event has its session. (A
        // future session purge must purge their events first, or this would skip them.)
        let mut q = feed_events::table
            .inner_join(sessions::table)
            .filter(feed_events::store_id.eq(store.as_str()))
            .filter(feed_events::environment.eq(env.as_str()))
            .filter(feed_events::position.gt(after))
            .order(feed_events::position)
            .limit(limit)
            .select((
                feed_events::position,
                feed_events::event_type,
                feed_events::occurred_at,
                SessionRow::as_select(),
            ))
            .into_boxed();
        if !types.is_empty() {
            q = q.filter(feed_events::event_type.eq_any(types.clone()));
        }
        let rows: Vec<PageRow> = q.load(conn).await?;
        let head = head_row!(conn, store, env);
        let ids: Vec<&str> = rows.iter().map(|r| r.3.id.as_str()).collect();
        let lines = lines_of!(conn, ids);
        (rows, head, lines)
    });
    let (last, purged_through) = head.unwrap_or_default();
    if after > last {
        return Ok(Read::Unknown);
    }
    if start.is_some() && after < purged_through {
        return Ok(Read::Expired);
    }
    let mut events = Vec::with_capacity(rows.len());
    for (position, kind, occurred_at, session) in rows {
        let kind = super::stored("event_type", EventKind::from_db(&kind))?;
        let lines = lines.remove(&session.id).unwrap_or_default();
        events.push(FeedEvent {
            position,
            kind,
            occurred_at,
            stored: StoredSession {
                session: as_of(kind, session),
                lines,
            },
        });
    }
    Ok(Read::Events(events))
}

/// The session as of an event. A session changes once, from open to an end that is final,
/// so the stored row is its state as of any ending; as of its creation it was open, with no
/// order and no end (a free order is created open and completed in the same transaction).
fn as_of(kind: EventKind, mut s: SessionRow) -> SessionRow {
    if kind == EventKind::Created {
        s.status = Status::Open.as_str().to_owned();
        s.order_id = None;
        s.completed_at = None;
        s.ended_at = None;
    }
    s
}

/// Deletes up to `batch` events that occurred before `cutoff` and records, per feed, the
/// highest position deleted (`purged_through`); returns how many were deleted. Cheap when
/// there is nothing to do: one read of the first entry of the `occurred_at` index.
pub async fn purge(db: &Db, cutoff: i64, batch: i64) -> AppResult<usize> {
    let oldest: Option<i64> = with_conn!(db, |conn| {
        feed_events::table
            .select(feed_events::occurred_at)
            .order(feed_events::occurred_at.asc())
            .first(conn)
            .await
            .optional()?
    });
    if oldest.is_none_or(|t| t >= cutoff) {
        return Ok(0);
    }
    let delete = match db.backend() {
        super::Backend::Postgres => format!(
            "DELETE FROM feed_events WHERE ctid = ANY(ARRAY( \
             SELECT ctid FROM feed_events WHERE occurred_at < $1 \
             ORDER BY occurred_at LIMIT {batch} FOR UPDATE SKIP LOCKED)) \
             RETURNING store_id, environment, position"
        ),
        super::Backend::Sqlite => format!(
            "DELETE FROM feed_events WHERE rowid IN ( \
             SELECT rowid FROM feed_events WHERE occurred_at < $1 \
             ORDER BY occurred_at LIMIT {batch}) \
             RETURNING store_id, environment, position"
        ),
    };
    with_tx!(db, |conn| {
        let deleted: Vec<write::Deleted> = diesel::sql_query(delete.as_str())
            .bind::<diesel::sql_types::BigInt, _>(cutoff)
            .load(conn)
            .await?;
        // Highest position per feed, taken in (store, environment) order like writers do.
        let mut through: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for d in &deleted {
            let e = through
                .entry((d.store_id.clone(), d.environment.clone()))
                .or_default();
            *e = (*e).max(d.position);
        }
        for ((store, env), position) in through {
            diesel::update(event_counters::table.find((store, env)))
                .filter(event_counters::purged_through.lt(position))
                .set(event_counters::purged_through.eq(position))
                .execute(conn)
                .await?;
        }
        Ok(deleted.len())
    })
}
