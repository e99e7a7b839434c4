//! Storage: one enum of two pools (embedded SQLite, production PostgreSQL) and two macros,
//! `with_conn!` and `with_tx!`, that expand a query body once per backend. Each query is
//! therefore written once and type-checked against both databases.
//!
//! SQLite runs in WAL mode with a busy timeout, and every write transaction is
//! `BEGIN IMMEDIATE` behind one in-process writer lock: SQLite allows one writer at a time,
//! and taking the write lock up front means a transaction never fails half-way when it
//! upgrades from reading to writing.

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend is in use.
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:block) => {
        match $db {
            $crate::db::Db::Sqlite { pool, .. } => {
                let mut pooled = pool.get().await?;
                let $conn: &mut $crate::db::SqliteConn = &mut pooled;
                $body
            }
            $crate::db::Db::Postgres { pool } => {
                let mut pooled = pool.get().await?;
                let $conn: &mut diesel_async::AsyncPgConnection = &mut pooled;
                $body
            }
        }
    };
}

/// Like `with_conn!`, inside one transaction (committed when `$body` returns `Ok`).
macro_rules! with_tx {
    ($db:expr, |$conn:ident| $body:block) => {
        match $db {
            $crate::db::Db::Sqlite { pool, writer } => {
                let _writer = writer.lock().await;
                let mut pooled = pool.get().await?;
                pooled
                    .immediate_transaction(
                        async |$conn: &mut $crate::db::SqliteConn| -> Result<_, $crate::error::AppError> { $body },
                    )
                    .await
            }
            $crate::db::Db::Postgres { pool } => {
                let mut pooled = pool.get().await?;
                diesel_async::AsyncConnection::transaction(
                    &mut *pooled,
                    async |$conn: &mut diesel_async::AsyncPgConnection| -> Result<_, $crate::error::AppError> { $body },
                )
                .await
            }
        }
    };
}

pub mod api_keys;
pub mod catalog;
pub mod connect;
pub mod lifecycle;
pub mod schema;
pub mod session_create;
pub mod sessions;
pub mod stores;
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

/// A multi-row INSERT on either backend, in the caller's transaction.
///
/// diesel runs SQLite batch inserts (SQLite has no `DEFAULT` keyword in VALUES) only on
/// synchronous connections, so on SQLite the statement runs in one blocking call on the
/// wrapped connection: a single hop for all rows, never one per row.
pub trait InsertBatch<Stmt> {
    fn insert_batch(
        &mut self,
        stmt: Stmt,
    ) -> futures_util::future::BoxFuture<'_, diesel::QueryResult<usize>>;
}

impl<Stmt> InsertBatch<Stmt> for diesel_async::AsyncPgConnection
where
    Stmt: diesel_async::methods::ExecuteDsl<diesel_async::AsyncPgConnection> + Send + 'static,
{
    fn insert_batch(
        &mut self,
        stmt: Stmt,
    ) -> futures_util::future::BoxFuture<'_, diesel::QueryResult<usize>> {
        Box::pin(diesel_async::RunQueryDsl::execute(stmt, self))
    }
}

impl<Stmt> InsertBatch<Stmt> for SqliteConn
where
    Stmt: diesel::query_dsl::methods::ExecuteDsl<diesel::SqliteConnection> + Send + 'static,
{
    fn insert_batch(
        &mut self,
        stmt: Stmt,
    ) -> futures_util::future::BoxFuture<'_, diesel::QueryResult<usize>> {
        self.spawn_blocking(move |conn| diesel::query_dsl::methods::ExecuteDsl::execute(stmt, conn))
    }
}
