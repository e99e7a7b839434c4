//! Storage: one enum of two pools (embedded SQLite, production PostgreSQL) and two macros,
//! `with_conn!` and `with_tx!`, that expand a query body once per backend. Each query is
//! therefore written once and type-checked against both databases.
//!
//! SQLite runs in WAL mode with a busy timeout, and every write transaction is
//! `BEGIN IMMEDIATE` on the one writer connection (`Db::Sqlite::writer`, a pool of one, so
//! in-process writers take turns): SQLite allows one writer at a time,
//! and taking the write lock up front means a transaction never fails half-way when it
//! upgrades from reading to writing. Its statements run inline (`connect::Inline`).
//!
//! Inside a body, `pipeline!(c => [q1(c), q2(c), …])` runs independent statements and
//! returns their results as a tuple: on PostgreSQL they are sent together and cost one
//! round trip (diesel-async pipelining), on SQLite they simply run one after the other.

/// PostgreSQL side of `pipeline!`: every statement is sent before any answer is awaited.
macro_rules! pipeline_pg {
    ($conn:ident, $c:ident => [$($q:expr),+]) => {{
        let shared: &diesel_async::AsyncPgConnection = &*$conn;
        futures_util::try_join!($({
            let $c = &mut &*shared;
            $q
        }),+)?
    }};
}

/// SQLite side of `pipeline!`: the same statements in order (each returns at once).
macro_rules! pipeline_sqlite {
    ($conn:ident, $c:ident => [$($q:expr),+]) => {
        ($({
            let $c = &mut *$conn;
            $q.await?
        },)+)
    };
}

/// Defines `pipeline!` for one arm of `with_conn!`/`with_tx!`. Local macros cannot repeat
/// (`$(…)*` would be read by the outer macro), hence one rule per arity.
macro_rules! define_pipeline {
    ($with:ident, $conn:ident) => {
        #[allow(unused_macros)]
        macro_rules! pipeline {
            ($c:ident => [$a:expr, $b:expr]) => { $with!($conn, $c => [$a, $b]) };
            ($c:ident => [$a:expr, $b:expr, $d:expr]) => { $with!($conn, $c => [$a, $b, $d]) };
            ($c:ident => [$a:expr, $b:expr, $d:expr, $e:expr]) => { $with!($conn, $c => [$a, $b, $d, $e]) };
            ($c:ident => [$a:expr, $b:expr, $d:expr, $e:expr, $f:expr]) => { $with!($conn, $c => [$a, $b, $d, $e, $f]) };
            ($c:ident => [$a:expr, $b:expr, $d:expr, $e:expr, $f:expr, $g:expr]) => { $with!($conn, $c => [$a, $b, $d, $e, $f, $g]) };
        }
    };
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend is in use.
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:block) => {
        match $db {
            $crate::db::Db::Sqlite { pool, .. } => {
                let mut pooled = pool.get().await?;
                let $conn: &mut $crate::db::SqliteConn = &mut pooled;
                define_pipeline!(pipeline_sqlite, $conn);
                $body
            }
            $crate::db::Db::Postgres { pool } => {
                let mut pooled = pool.get().await?;
                let $conn: &mut diesel_async::AsyncPgConnection = &mut pooled;
                define_pipeline!(pipeline_pg, $conn);
                $body
            }
        }
    };
}

/// Like `with_conn!`, inside one transaction (committed when `$body` returns `Ok`).
macro_rules! with_tx {
    ($db:expr, |$conn:ident| $body:block) => {
        match $db {
            $crate::db::Db::Sqlite { writer, .. } => {
                let span = tracing::info_span!("db.transaction", db.system = "sqlite");
                let mut pooled =
                    tracing::Instrument::instrument(writer.get(), span.clone()).await?;
                let $conn: &mut $crate::db::SqliteConn = &mut pooled;
                // Statements run inline (no await suspends between BEGIN and COMMIT), so a
                // cancelled call cannot leave the transaction open.
                let tx = async {
                    $crate::db::connect::begin_immediate($conn).await?;
                    // A closure, so that `return` and `?` in the body leave the body only.
                    #[allow(clippy::redundant_closure_call)]
                    let result = (async || -> Result<_, $crate::error::AppError> {
                        define_pipeline!(pipeline_sqlite, $conn);
                        $body
                    })()
                    .await;
                    $crate::db::connect::finish($conn, result).await
                };
                tracing::Instrument::instrument(tx, span).await
            }
            $crate::db::Db::Postgres { pool } => {
                let span = tracing::info_span!("db.transaction", db.system = "postgresql");
                let mut pooled = pool.get().await?;
                let tx = diesel_async::AsyncConnection::transaction(
                    &mut *pooled,
                    async |$conn: &mut diesel_async::AsyncPgConnection| -> Result<_, $crate::error::AppError> {
                        define_pipeline!(pipeline_pg, $conn);
                        $body
                    },
                );
                tracing::Instrument::instrument(tx, span).await
            }
        }
    };
}

/// The locked lines of these sessions, in line order, in one query.
macro_rules! lines_of {
    ($conn:ident, $ids:expr) => {{
        let ids = $ids;
        // No sessions, no query: a caught-up feed watcher's read finds none on every wake.
        let rows: Vec<$crate::db::sessions::LineRow> = if ids.is_empty() {
            Vec::new()
        } else {
            $crate::db::schema::session_lines::table
                .filter($crate::db::schema::session_lines::session_id.eq_any(ids))
                .order((
                    $crate::db::schema::session_lines::session_id,
                    $crate::db::schema::session_lines::position,
                ))
                .select($crate::db::sessions::LineRow::as_select())
                .load($conn)
                .await?
        };
        let mut by_session: std::collections::HashMap<String, Vec<$crate::db::sessions::LineRow>> =
            std::collections::HashMap::new();
        for row in rows {
            by_session
                .entry(row.session_id.clone())
                .or_default()
                .push(row);
        }
        by_session
    }};
}

/// Whether the store exists; callers creating things that belong to a store check it in
/// their transaction, to answer NOT_FOUND `Store not found` instead of a foreign-key error.
macro_rules! store_exists {
    ($conn:ident, $store_id:expr) => {{
        let n: i64 = $crate::db::schema::stores::table
            .filter($crate::db::schema::stores::id.eq($store_id))
            .count()
            .get_result($conn)
            .await?;
        n > 0
    }};
}

/// Records a webhook event and one pending delivery job per active endpoint of its store
/// and environment subscribed to its type, in the caller's transaction (the transactional outbox).
macro_rules! record_event {
    ($conn:ident, $event:expr) => {{
        use diesel::{
            sql_types::{BigInt, Integer, Nullable, Text},
            IntoSql,
        };
        use $crate::db::schema::{webhook_endpoints as ep, webhook_events, webhook_outbox as ob};
        let event: &$crate::db::outbox::EventRow = $event;
        diesel::insert_into(webhook_events::table)
            .values(event)
            .execute($conn)
            .await?;
        let jobs = ep::table
            .filter(ep::store_id.eq(event.store_id.clone()))
            .filter(ep::environment.eq(event.environment.clone()))
            .filter(ep::disabled_at.is_null())
            // Subscribed to this type: all types (empty), or the type in the list. Part of
            // the one INSERT … SELECT, so the filter costs no round trip.
            .filter(
                ep::event_types.eq("").or(","
                    .into_sql::<Text>()
                    .concat(ep::event_types)
                    .concat(",")
                    .like(format!("%,{},%", event.event_type))),
            )
            .select((
                event.id.clone().into_sql::<Text>(),
                ep::id,
                "pending".into_sql::<Text>(),
                0.into_sql::<Integer>(),
                event.created_at.into_sql::<BigInt>(),
                None::<i64>.into_sql::<Nullable<BigInt>>(),
                event.created_at.into_sql::<BigInt>(),
            ));
        diesel::insert_into(ob::table)
            .values(jobs)
            .into_columns((
                ob::event_id,
                ob::endpoint_id,
                ob::state,
                ob::attempts,
                ob::next_attempt_at,
                ob::lease_until,
                ob::updated_at,
            ))
            .execute($conn)
            .await?;
    }};
}

pub mod admin_lists;
pub mod api_keys;
pub mod catalog;
mod checkpoint;
pub mod connect;
pub mod feed;
pub mod lifecycle;
pub mod outbox;
pub mod schema;
pub mod secrets;
pub mod session_create;
pub mod sessions;
pub mod stores;
pub mod webhook_endpoints;
pub mod webhooks;

pub use connect::{Backend, Db, SqliteConn};

use crate::error::AppError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Maps a unique violation to ALREADY_EXISTS with `message`; other errors pass through.
pub(crate) fn or_conflict(message: &'static str) -> impl FnOnce(DieselError) -> AppError {
    move |e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            AppError::AlreadyExists(message.into())
        }
        e => e.into(),
    }
}

/// Parses a value the database holds and only this service writes; a mismatch means the
/// data was changed behind the service's back, which is an internal error.
pub(crate) fn stored<T>(what: &str, value: Option<T>) -> Result<T, AppError> {
    value.ok_or_else(|| AppError::internal(format!("unexpected stored value for {what}")))
}

/// A multi-row INSERT on either backend, in the caller's transaction (or pipeline).
///
/// diesel runs SQLite batch inserts (SQLite has no `DEFAULT` keyword in VALUES) only on
/// synchronous connections, so on SQLite the statement runs in one call on the wrapped
/// connection: a single statement for all rows, never one per row. Taking the connection
/// by value lets a pipelined PostgreSQL statement (`&mut &AsyncPgConnection`) return a
/// future that outlives the temporary it was called on.
pub trait InsertBatch<Stmt> {
    type Future;
    fn insert_batch(self, stmt: Stmt) -> Self::Future;
}

type Executed<'a> = futures_util::future::BoxFuture<'a, diesel::QueryResult<usize>>;

impl<'c, Stmt> InsertBatch<Stmt> for &'c mut diesel_async::AsyncPgConnection
where
    Stmt: diesel_async::methods::ExecuteDsl<diesel_async::AsyncPgConnection> + Send + 'c,
{
    type Future = Executed<'c>;
    fn insert_batch(self, stmt: Stmt) -> Executed<'c> {
        Box::pin(diesel_async::RunQueryDsl::execute(stmt, self))
    }
}

impl<'a, Stmt> InsertBatch<Stmt> for &mut &'a diesel_async::AsyncPgConnection
where
    Stmt: diesel_async::methods::ExecuteDsl<&'a diesel_async::AsyncPgConnection> + Send + 'a,
{
    type Future = Executed<'a>;
    fn insert_batch(self, stmt: Stmt) -> Executed<'a> {
        let mut shared = *self; // copies the shared reference, which lives for 'a
        Box::pin(async move { diesel_async::RunQueryDsl::execute(stmt, &mut shared).await })
    }
}

impl<'c, Stmt> InsertBatch<Stmt> for &'c mut SqliteConn
where
    Stmt: diesel::query_dsl::methods::ExecuteDsl<diesel::SqliteConnection> + Send + 'static,
{
    type Future = Executed<'c>;
    fn insert_batch(self, stmt: Stmt) -> Executed<'c> {
        self.spawn_blocking(move |conn| diesel::query_dsl::methods::ExecuteDsl::execute(stmt, conn))
    }
}

/// A statement that runs only when there is something for it to do, as one element of a
/// `pipeline!` (whose elements are fixed in number).
pub async fn optional<T>(
    statement: Option<impl std::future::Future<Output = diesel::QueryResult<T>>>,
) -> diesel::QueryResult<Option<T>> {
    match statement {
        Some(s) => s.await.map(Some),
        None => Ok(None),
    }
}
