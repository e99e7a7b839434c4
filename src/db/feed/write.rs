//! Writing events: one statement per feed, the caller's transaction's last before COMMIT
//! (see the parent module for why that makes positions follow commit order).
use crate::db::SqliteConn;
use diesel::{
    sql_types::{Array, BigInt, Text},
    QueryableByName,
};

/// The events one transaction writes to one store's and environment's feed, in order.
#[derive(Debug, Clone)]
pub struct FeedBatch {
    pub store_id: String,
    pub environment: String,
    pub occurred_at: i64,
    /// (event type as stored, session id).
    pub events: Vec<(&'static str, String)>,
}

impl FeedBatch {
    pub fn new(store_id: &str, environment: &str, occurred_at: i64) -> Self {
        FeedBatch {
            store_id: store_id.to_owned(),
            environment: environment.to_owned(),
            occurred_at,
            events: Vec::new(),
        }
    }

    pub fn with(mut self, kind: crate::domain::feed::EventKind, session_id: &str) -> Self {
        self.events.push((kind.as_str(), session_id.to_owned()));
        self
    }
}

/// A row the purge deleted.
#[derive(QueryableByName)]
pub(super) struct Deleted {
    #[diesel(sql_type = Text)]
    pub store_id: String,
    #[diesel(sql_type = Text)]
    pub environment: String,
    #[diesel(sql_type = BigInt)]
    pub position: i64,
}

/// PostgreSQL: the counter's increment and the events' insert are one statement (a
/// data-modifying CTE), so a batch costs nothing more than its place in a pipeline.
const PG_RECORD: &str = "\
WITH c AS ( \
    INSERT INTO event_counters AS c (store_id, environment, last_position, purged_through) \
    VALUES ($1, $2, $3, 0) \
    ON CONFLICT (store_id, environment) \
    DO UPDATE SET last_position = c.last_position + EXCLUDED.last_position \
    RETURNING last_position) \
INSERT INTO feed_events (store_id, environment, position, event_type, session_id, occurred_at) \
SELECT $1, $2, c.last_position - $3 + e.n, e.t, e.s, $4 \
FROM c, unnest($5::text[], $6::text[]) WITH ORDINALITY AS e(t, s, n)";

/// The PostgreSQL statement for a batch (a macro: its type is long and backend-specific).
macro_rules! pg_record {
    ($batch:expr) => {{
        let batch: &FeedBatch = $batch;
        let (types, ids): (Vec<String>, Vec<String>) = batch
            .events
            .iter()
            .map(|(t, s)| ((*t).to_owned(), s.clone()))
            .unzip();
        diesel::sql_query(PG_RECORD)
            .bind::<Text, _>(batch.store_id.clone())
            .bind::<Text, _>(batch.environment.clone())
            .bind::<BigInt, _>(batch.events.len() as i64)
            .bind::<BigInt, _>(batch.occurred_at)
            .bind::<Array<Text>, _>(types)
            .bind::<Array<Text>, _>(ids)
    }};
}

type Recorded<'a> = futures_util::future::BoxFuture<'a, diesel::QueryResult<usize>>;

/// Records a batch in the caller's transaction: on a pooled or pipelined PostgreSQL
/// connection, or inline on SQLite. Callers make it their last statement before COMMIT.
pub trait RecordFeed {
    type Future;
    fn record_feed(self, batch: &FeedBatch) -> Self::Future;
}

impl<'c> RecordFeed for &'c mut diesel_async::AsyncPgConnection {
    type Future = Recorded<'c>;
    fn record_feed(self, batch: &FeedBatch) -> Recorded<'c> {
        if batch.events.is_empty() {
            return Box::pin(std::future::ready(Ok(0)));
        }
        let stmt = pg_record!(batch);
        Box::pin(diesel_async::RunQueryDsl::execute(stmt, self))
    }
}

impl<'a> RecordFeed for &mut &'a diesel_async::AsyncPgConnection {
    type Future = Recorded<'a>;
    fn record_feed(self, batch: &FeedBatch) -> Recorded<'a> {
        if batch.events.is_empty() {
            return Box::pin(std::future::ready(Ok(0)));
        }
        let mut shared = *self; // copies the shared reference, which lives for 'a
        let stmt = pg_record!(batch);
        Box::pin(async move { diesel_async::RunQueryDsl::execute(stmt, &mut shared).await })
    }
}

impl<'c> RecordFeed for &'c mut SqliteConn {
    type Future = Recorded<'c>;
    fn record_feed(self, batch: &FeedBatch) -> Recorded<'c> {
        let batch = batch.clone();
        self.spawn_blocking(move |c| {
            use crate::db::schema::{event_counters as ec, feed_events as fe};
            use diesel::{prelude::*, RunQueryDsl as Sync};
            if batch.events.is_empty() {
                return Ok(0);
            }
            let n = batch.events.len() as i64;
            Sync::execute(
                diesel::insert_into(ec::table)
                    .values((
                        ec::store_id.eq(&batch.store_id),
                        ec::environment.eq(&batch.environment),
                        ec::last_position.eq(n),
                        ec::purged_through.eq(0),
                    ))
                    .on_conflict((ec::store_id, ec::environment))
                    .do_update()
                    .set(ec::last_position.eq(ec::last_position + n)),
                c,
            )?;
            let last: i64 = Sync::first(
                ec::table
                    .find((&batch.store_id, &batch.environment))
                    .select(ec::last_position),
                c,
            )?;
            for (i, (kind, session_id)) in batch.events.iter().enumerate() {
                Sync::execute(
                    diesel::insert_into(fe::table).values((
                        fe::store_id.eq(&batch.store_id),
                        fe::environment.eq(&batch.environment),
                        fe::position.eq(last - n + 1 + i as i64),
                        fe::event_type.eq(*kind),
                        fe::session_id.eq(session_id),
                        fe::occurred_at.eq(batch.occurred_at),
                    )),
                    c,
                )?;
            }
            Ok(batch.events.len())
        })
    }
}
