//! The event feed's storage (SPEC §11): writing events in the transaction of the change
//! they record, reading a page after a position, and the retention purge.
//!
//! Why a reader can never miss an event (the feed's central promise): a reader that has
//! read up to position p must never later find an event before p. On SQLite there is one
//! writer at a time: positions come from the store's `event_counters` row, incremented in
//! the writer's transaction, so they are in commit order. On PostgreSQL, many writers on
//! many replicas commit at once, and positions handed out in one order (a sequence) commit
//! in another: a reader that saw 12 could later see 11 appear. Serializing the writers of a
//! store on a counter row (the first design) holds its lock through COMMIT, so a store's
//! commits flushed one after another and halved its write throughput. So on PostgreSQL a
//! position is (tx, seq): the id of the writing transaction (`pg_current_xact_id()`) and a
//! sequence number, neither waited for; and a reader reads only events whose transaction is
//! older than the oldest transaction of this database still running in its snapshot (the
//! *horizon*, `PG_HORIZON`). Every transaction below the horizon has ended, and every transaction
//! that has not yet ended, or has not yet begun writing, has an id at or above it, so no
//! event can ever appear below a horizon a reader has read up to. Positions follow the order
//! transactions began writing, not quite their commit order: an event that committed after
//! another started after it, unless the two ran at the same time, which no reader could
//! tell apart. The cost: an event is readable only once the transactions that started
//! before it have ended (milliseconds here, where every transaction is short; a long
//! writing transaction in this database holds the feed back until it ends). The read
//! reports events committed above the horizon (`Page::held_back`) so that watchers look
//! again soon instead of waiting for another commit.
use super::{
    schema::{event_counters, feed_events, sessions},
    sessions::{SessionRow, StoredSession},
    Db,
};
use crate::{
    domain::{
        feed::{EventKind, Position},
        ids::StoreId,
        session_state::Status,
        Environment,
    },
    error::AppResult,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

mod write;
pub use write::{FeedBatch, RecordFeed};

/// One event as read, with the session as of that event.
pub struct FeedEvent {
    pub position: Position,
    pub kind: EventKind,
    pub occurred_at: i64,
    pub stored: StoredSession,
}

/// What a read after a position found.
pub enum Read {
    Events(Page),
    /// The position is past the end of this feed: no cursor of this feed names it.
    Unknown,
    /// Events after the position were purged: resuming from it would skip them.
    Expired,
}

pub struct Page {
    pub events: Vec<FeedEvent>,
    /// Events of this feed have committed beyond the horizon this read stopped at: they
    /// become readable when the older transactions still running end, which may wake no
    /// one (they need not write events), so the reader should look again soon.
    pub held_back: bool,
}

/// The SQL of the PostgreSQL horizon (see the module docs), as a bigint: the oldest
/// transaction running in this snapshot, leaving out those known to run in another
/// database (a transaction id is cluster-wide, but another database's transactions never
/// write this feed, and one left running there must not hold it back); the next id to be
/// assigned if none is left. Leaving one out only on proof (its backend is connected to
/// another database, which a backend never leaves) keeps the race with the backend list
/// safe: a transaction that ended meanwhile, or whose backend is hidden, counts.
const PG_HORIZON: &str = "coalesce(( \
    SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x \
    WHERE x::xid NOT IN (SELECT a.backend_xid FROM pg_stat_get_activity(NULL) AS a \
        WHERE a.backend_xid IS NOT NULL AND a.datid <> \
            (SELECT oid FROM pg_database WHERE datname = current_database()))), \
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint)";

/// The horizon of a read: events with `tx` below `below` are read. A cursor whose `tx` is
/// above `newest` names nothing yet.
#[derive(Clone, Copy)]
struct Horizon {
    below: i64,
    newest: i64,
}

/// On an open connection: PostgreSQL's horizon now; on SQLite, whose events all have tx 0,
/// everything.
macro_rules! horizon {
    ($conn:ident, $pg:expr) => {{
        if $pg {
            let h: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(PG_HORIZON))
                .get_result($conn)
                .await?;
            Horizon {
                below: h,
                newest: h,
            }
        } else {
            Horizon {
                below: i64::MAX,
                newest: 0,
            }
        }
    }};
}

/// The feed's counter row: (last position of the counter, purged through, as a position).
/// A statement to load (so it can join a pipeline); `counters` reads its result, (0, START)
/// without a row.
macro_rules! counters_query {
    ($store:expr, $env:expr) => {
        event_counters::table
            .find(($store.as_str(), $env.as_str()))
            .select((
                event_counters::last_position,
                event_counters::purged_tx,
                event_counters::purged_through,
            ))
    };
}

fn counters(rows: Vec<(i64, i64, i64)>) -> (i64, Position) {
    rows.into_iter()
        .next()
        .map_or((0, Position::START), |(last, tx, seq)| {
            (last, Position { tx, seq })
        })
}

/// The position of "now" in a feed: every event committed from now on is after it.
pub async fn now(db: &Db, store: &StoreId, env: Environment) -> AppResult<Position> {
    let pg = db.backend() == super::Backend::Postgres;
    with_conn!(db, |conn| {
        if pg {
            // Whatever commits from now on has a transaction id at or above the horizon.
            let h = horizon!(conn, pg);
            Ok(Position {
                tx: h.below,
                seq: 0,
            })
        } else {
            let rows = counters_query!(store, env).load(conn).await?;
            Ok(Position {
                tx: 0,
                seq: counters(rows).0,
            })
        }
    })
}

type PageRow = (i64, i64, String, i64, SessionRow);

/// Up to `limit` events after `after` (`None`: from the oldest retained), in position
/// order, of the given kinds (all if empty). The events are read by primary key range,
/// below the horizon read just before; the purge bookkeeping is read after them, so a purge
/// that ran in between is seen (and answered `Expired`) rather than skipped over.
pub async fn read_after(
    db: &Db,
    store: &StoreId,
    env: Environment,
    start: Option<Position>,
    kinds: &[EventKind],
    limit: i64,
) -> AppResult<Read> {
    use diesel::sql_types::{BigInt, Bool};
    let pg = db.backend() == super::Backend::Postgres;
    let types: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let after = start.unwrap_or(Position::START);
    let (rows, horizon, (last, purged), held_back, mut lines) = with_conn!(db, |conn| {
        let horizon = horizon!(conn, pg);
        // An inner join: sessions are never deleted, so every event has its session. (A
        // future session purge must purge their events first, or this would skip them.)
        let after_sql = diesel::dsl::sql::<Bool>("(feed_events.tx, feed_events.position) > (")
            .bind::<BigInt, _>(after.tx)
            .sql(", ")
            .bind::<BigInt, _>(after.seq)
            .sql(")");
        let mut q = feed_events::table
            .inner_join(sessions::table)
            .filter(feed_events::store_id.eq(store.as_str()))
            .filter(feed_events::environment.eq(env.as_str()))
            .filter(after_sql)
            .filter(feed_events::tx.lt(horizon.below))
            .order((feed_events::tx, feed_events::position))
            .limit(limit)
            .select((
                feed_events::tx,
                feed_events::position,
                feed_events::event_type,
                feed_events::occurred_at,
                SessionRow::as_select(),
            ))
            .into_boxed();
        if !types.is_empty() {
            q = q.filter(feed_events::event_type.eq_any(types.clone()));
        }
        // Sent together: the server runs them in order, so the counters are read after
        // the page (see above) at no extra round trip.
        let (rows, counters_rows, held_back) = pipeline!(c => [
            q.load::<PageRow>(c),
            counters_query!(store, env).load::<(i64, i64, i64)>(c),
            super::optional(pg.then(|| {
                diesel::select(diesel::dsl::exists(
                    feed_events::table
                        .filter(feed_events::store_id.eq(store.as_str()))
                        .filter(feed_events::environment.eq(env.as_str()))
                        .filter(feed_events::tx.ge(horizon.below)),
                ))
                .get_result::<bool>(c)
            }))
        ]);
        let held_back = held_back.unwrap_or(false);
        let ids: Vec<&str> = rows.iter().map(|r| r.4.id.as_str()).collect();
        let lines = lines_of!(conn, ids);
        (rows, horizon, counters(counters_rows), held_back, lines)
    });
    if after.tx > horizon.newest || (after.tx == 0 && after.seq > last) {
        return Ok(Read::Unknown);
    }
    if start.is_some() && after < purged {
        return Ok(Read::Expired);
    }
    let mut events = Vec::with_capacity(rows.len());
    for (tx, seq, kind, occurred_at, session) in rows {
        let kind = super::stored("event_type", EventKind::from_db(&kind))?;
        let lines = lines.remove(&session.id).unwrap_or_default();
        events.push(FeedEvent {
            position: Position { tx, seq },
            kind,
            occurred_at,
            stored: StoredSession {
                session: as_of(kind, session),
                lines,
            },
        });
    }
    Ok(Read::Events(Page { events, held_back }))
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
/// highest position deleted (`purged_tx`, `purged_through`); returns how many were deleted. Cheap when
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
             RETURNING store_id, environment, tx, position"
        ),
        // A WITHOUT ROWID table: rows are named by their primary key.
        super::Backend::Sqlite => format!(
            "DELETE FROM feed_events WHERE (store_id, environment, tx, position) IN ( \
             SELECT store_id, environment, tx, position FROM feed_events \
             WHERE occurred_at < $1 ORDER BY occurred_at LIMIT {batch}) \
             RETURNING store_id, environment, tx, position"
        ),
    };
    with_tx!(db, |conn| {
        let deleted: Vec<write::Deleted> = diesel::sql_query(delete.as_str())
            .bind::<diesel::sql_types::BigInt, _>(cutoff)
            .load(conn)
            .await?;
        // Highest position per feed, in (store, environment) order like every writer of
        // several counter rows. The row may not exist yet on PostgreSQL, whose writers
        // no longer touch it.
        let mut through: std::collections::BTreeMap<(String, String), Position> =
            Default::default();
        for d in &deleted {
            let e = through
                .entry((d.store_id.clone(), d.environment.clone()))
                .or_default();
            *e = (*e).max(Position {
                tx: d.tx,
                seq: d.position,
            });
        }
        for ((store, env), position) in through {
            diesel::sql_query(
                "INSERT INTO event_counters AS c \
                 (store_id, environment, last_position, purged_tx, purged_through) \
                 VALUES ($1, $2, 0, $3, $4) ON CONFLICT (store_id, environment) DO UPDATE \
                 SET purged_tx = EXCLUDED.purged_tx, purged_through = EXCLUDED.purged_through \
                 WHERE (c.purged_tx, c.purged_through) < (EXCLUDED.purged_tx, EXCLUDED.purged_through)",
            )
            .bind::<diesel::sql_types::Text, _>(store)
            .bind::<diesel::sql_types::Text, _>(env)
            .bind::<diesel::sql_types::BigInt, _>(position.tx)
            .bind::<diesel::sql_types::BigInt, _>(position.seq)
            .execute(conn)
            .await?;
        }
        Ok(deleted.len())
    })
}

/// PostgreSQL: one notification on `channel` per payload, in one statement of its own
/// transaction (workers.rs, the feed announcer).
pub async fn announce(db: &Db, channel: &str, payloads: &[String]) -> AppResult<()> {
    let notify = format!("SELECT pg_notify('{channel}', p) FROM unnest($1::text[]) AS p");
    // SQLite has one replica, and no notifications: nothing to announce.
    let Db::Postgres { pool } = db else {
        return Ok(());
    };
    let mut conn = pool.get().await?;
    diesel::sql_query(notify.as_str())
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(payloads)
        .execute(&mut conn)
        .await?;
    Ok(())
}
