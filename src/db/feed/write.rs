//! Writing events: one statement per feed in the caller's transaction (see the parent
//! module for how positions are taken). On SQLite it comes last before COMMIT, which
//! matters nowhere else: there is one writer at a time.
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
    pub tx: i64,
    #[diesel(sql_type = BigInt)]
    pub position: i64,
}

/// PostgreSQL: one INSERT of the batch's events, which take their position from column
/// defaults (the transaction's id and a sequence; see the parent module): no row is locked,
/// so writers of one store commit together. It is its own query type rather than
/// `sql_query`, whose statements are never cached: each would be prepared anew, one more
/// round trip per transaction. Its text never changes (the events travel as two arrays), so
/// the prepared statement is cached per connection.
pub struct PgRecord {
    store_id: String,
    environment: String,
    occurred_at: i64,
    types: Vec<String>,
    ids: Vec<String>,
}

impl PgRecord {
    fn new(batch: &FeedBatch) -> Self {
        let (types, ids) = batch
            .events
            .iter()
            .map(|(t, s)| ((*t).to_owned(), s.clone()))
            .unzip();
        PgRecord {
            store_id: batch.store_id.clone(),
            environment: batch.environment.clone(),
            occurred_at: batch.occurred_at,
            types,
            ids,
        }
    }
}

impl diesel::query_builder::QueryId for PgRecord {
    type QueryId = PgRecord;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for PgRecord {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        // In the batch's order: the sequence is taken row by row as they are inserted.
        out.push_sql(
            "INSERT INTO feed_events (store_id, environment, event_type, session_id, occurred_at) \
             SELECT ",
        );
        out.push_bind_param::<Text, _>(&self.store_id)?;
        out.push_sql("::text, ");
        out.push_bind_param::<Text, _>(&self.environment)?;
        out.push_sql("::text, e.t, e.s, ");
        out.push_bind_param::<BigInt, _>(&self.occurred_at)?;
        out.push_sql("::bigint FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.types)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.ids)?;
        out.push_sql("::text[]) WITH ORDINALITY AS e(t, s, n) ORDER BY e.n");
        Ok(())
    }
}

type Recorded<'a> = futures_util::future::BoxFuture<'a, diesel::QueryResult<usize>>;

/// Records a batch in the caller's transaction: on a pooled or pipelined PostgreSQL
/// connection, or inline on SQLite.
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
        let stmt = PgRecord::new(batch);
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
        let stmt = PgRecord::new(batch);
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
            let last: i64 = Sync::get_result(
                diesel::insert_into(ec::table)
                    .values((
                        ec::store_id.eq(&batch.store_id),
                        ec::environment.eq(&batch.environment),
                        ec::last_position.eq(n),
                        ec::purged_through.eq(0),
                    ))
                    .on_conflict((ec::store_id, ec::environment))
                    .do_update()
                    .set(ec::last_position.eq(ec::last_position + n))
                    .returning(ec::last_position),
                c,
            )?;
            let rows: Vec<_> = (batch.events.iter().enumerate())
                .map(|(i, (kind, session_id))| {
                    (
                        fe::store_id.eq(&batch.store_id),
                        fe::environment.eq(&batch.environment),
                        fe::position.eq(last - n + 1 + i as i64),
                        fe::event_type.eq(*kind),
                        fe::session_id.eq(session_id),
                        fe::occurred_at.eq(batch.occurred_at),
                    )
                })
                .collect();
            Sync::execute(diesel::insert_into(fe::table).values(rows), c)?;
            Ok(batch.events.len())
        })
    }
}
