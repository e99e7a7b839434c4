//! Opening the pools and applying migrations.
use anyhow::{bail, Context};
use diesel::{ConnectionError, SqliteConnection};
use diesel_async::{
    pooled_connection::{bb8::Pool, AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod},
    sync_connection_wrapper::SyncConnectionWrapper,
    AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;
use std::{sync::Arc, time::Duration};

/// SQLite statements run inline on the calling task (see [`Inline`]).
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, Inline>;

/// Runs SQLite work on the calling thread instead of a `spawn_blocking` hop per statement.
///
/// Why: a statement on this embedded, WAL-mode database takes microseconds, while a hop to
/// the blocking pool and back costs more than that, twice per statement (a create runs ~8).
/// Nothing here waits on another process in normal operation: in-process writers are
/// serialized by `Db::Sqlite::writer` (one connection) before `BEGIN IMMEDIATE`, and WAL readers never wait
/// for writers. Only another process writing the same file (`checkout admin` run beside a
/// server) can make a statement wait, up to `busy_timeout`; that is rare and short.
pub struct Inline;

impl diesel_async::sync_connection_wrapper::SpawnBlocking for Inline {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>,
    >
    where
        R: Send + 'static,
    {
        Box::pin(std::future::ready(Ok(task())))
    }

    fn get_runtime() -> Self {
        Inline
    }
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Replicas starting together must not apply migrations twice; they take this
/// session-level advisory lock first (an arbitrary constant: "checkout" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x636865636b6f7574;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub enum Db {
    Sqlite {
        /// Reads, and single-statement writes.
        pool: Pool<SqliteConn>,
        /// The one connection write transactions run on, one at a time (SQLite has a single
        /// writer anyway: waiting here is waiting in line, without holding a connection).
        /// One connection rather than any of the pool's: a connection's page cache is
        /// dropped whenever another connection has written, so a writer that follows a
        /// different writer re-reads every page it touches from the WAL; the same
        /// connection each time keeps its pages and its prepared write statements. A
        /// broken connection is replaced by the pool.
        writer: Pool<SqliteConn>,
        /// Checkpoints the WAL for the writer, which does not (see `super::checkpoint`).
        _checkpointer: Arc<super::checkpoint::Checkpointer>,
    },
    Postgres {
        pool: Pool<AsyncPgConnection>,
    },
}

/// Pool settings. Env vars: `CHECKOUT_DB_POOL_SIZE` (default 16),
/// `CHECKOUT_DB_CONNECT_TIMEOUT_MS` (default 5000): how long a request waits for a
/// connection before it fails with UNAVAILABLE.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_size: u32,
    pub connect_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// `sqlite://checkout.db` (relative) or `sqlite:///var/lib/checkout.db` (absolute).
fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://").filter(|p| !p.is_empty())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub fn backend_of(url: &str) -> anyhow::Result<Backend> {
    if sqlite_path(url).is_some() {
        Ok(Backend::Sqlite)
    } else if is_postgres(url) {
        Ok(Backend::Postgres)
    } else {
        bail!("DATABASE_URL must be sqlite://PATH or postgres://…")
    }
}

/// A connection of the writer pool: no automatic checkpoint (`super::checkpoint`).
async fn sqlite_writer_connection(path: &str) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = sqlite_connection(path).await?;
    conn.batch_execute(super::checkpoint::WRITER_PRAGMAS)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

async fn sqlite_connection(path: &str) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(path).await?;
    // busy_timeout first: switching to WAL needs a lock another process may hold.
    // secure_delete: a replaced or deleted value (a secret re-sealed at start) is zeroed in
    // its page rather than left readable in the file's free space; FAST costs no extra I/O.
    conn.batch_execute(
        "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = FAST;",
    )
    .await
    .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// Opens a write transaction with `BEGIN IMMEDIATE` (diesel-async offers it only for the
/// tokio-spawning wrapper). The caller holds the writer connection.
pub async fn begin_immediate(conn: &mut SqliteConn) -> diesel::QueryResult<()> {
    conn.spawn_blocking(|c| {
        diesel::connection::AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
    })
    .await
}

/// Commits when the body succeeded, rolls back when it failed, and returns its result. A
/// failed rollback leaves the connection marked broken, so the pool discards it.
pub async fn finish<T>(
    conn: &mut SqliteConn,
    result: Result<T, crate::error::AppError>,
) -> Result<T, crate::error::AppError> {
    use diesel_async::{
        sync_connection_wrapper::SyncTransactionManagerWrapper as Manager, TransactionManager,
    };
    type Sqlite = Manager<diesel::connection::AnsiTransactionManager>;
    match result {
        Ok(value) => {
            Sqlite::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(e) => {
            let _ = Sqlite::rollback_transaction(conn).await;
            Err(e)
        }
    }
}

/// Whether a pooled PostgreSQL connection can be handed out: its socket is still open (a
/// backend that was terminated or restarted closed it) and no transaction was left open.
/// No statement is sent; a connection that died silently fails its next statement, which
/// the caller sees as UNAVAILABLE, and is then discarded.
fn alive(
    conn: &mut AsyncPgConnection,
) -> futures_util::future::BoxFuture<'_, diesel::QueryResult<()>> {
    use diesel_async::pooled_connection::PoolableConnection;
    let result = if conn.is_broken() {
        Err(diesel::result::Error::BrokenTransactionManager)
    } else {
        Ok(())
    };
    Box::pin(std::future::ready(result))
}

fn pool_builder<M: bb8::ManageConnection>(opts: &PoolOptions) -> bb8::Builder<M> {
    bb8::Pool::builder()
        .max_size(opts.max_size)
        .connection_timeout(opts.connect_timeout)
    // Checked on checkout, but without a round trip (`alive`): no `SELECT 1` before every
    // use, which doubled the round trips of a read.
}

impl Db {
    pub async fn connect(url: &str, opts: &PoolOptions) -> anyhow::Result<Db> {
        match backend_of(url)? {
            Backend::Sqlite => {
                let path = sqlite_path(url).expect("checked by backend_of");
                let manager = |writer: bool| {
                    let mut config = ManagerConfig::default();
                    config.custom_setup = if writer {
                        Box::new(|path| sqlite_writer_connection(path).boxed())
                    } else {
                        Box::new(|path| sqlite_connection(path).boxed())
                    };
                    // An embedded file does not go away like a socket: no `SELECT 1` on
                    // every checkout, only the check for a transaction left open.
                    config.recycling_method = RecyclingMethod::Fast;
                    AsyncDieselConnectionManager::new_with_config(path, config)
                };
                let writer = PoolOptions {
                    max_size: 1,
                    ..opts.clone()
                };
                let writer = pool_builder(&writer).build(manager(true)).await?;
                let checkpointer = super::checkpoint::spawn(path.to_owned(), writer.clone());
                Ok(Db::Sqlite {
                    pool: pool_builder(opts).build(manager(false)).await?,
                    writer,
                    _checkpointer: Arc::new(checkpointer),
                })
            }
            Backend::Postgres => {
                let mut config = ManagerConfig::default();
                config.recycling_method = RecyclingMethod::CustomFunction(Box::new(alive));
                let manager = AsyncDieselConnectionManager::new_with_config(url, config);
                Ok(Db::Postgres {
                    pool: pool_builder(opts).build(manager).await?,
                })
            }
        }
    }

    /// (open connections, idle connections) of this replica's pool.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = match self {
            Db::Sqlite { pool, .. } => pool.state(),
            Db::Postgres { pool } => pool.state(),
        };
        (state.connections, state.idle_connections)
    }

    /// The locking clause for claiming work rows: on Postgres, replicas skip rows another
    /// one holds; SQLite has one writer at a time and no such clause.
    pub fn skip_locked(&self) -> &'static str {
        match self {
            Db::Sqlite { .. } => "",
            Db::Postgres { .. } => "FOR UPDATE SKIP LOCKED",
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Applies pending migrations on a dedicated connection. Needs a multi-threaded
    /// runtime (the harness blocks in place).
    pub async fn migrate(url: &str) -> anyhow::Result<()> {
        match backend_of(url)? {
            Backend::Sqlite => {
                let path = sqlite_path(url).expect("checked by backend_of");
                let conn = sqlite_connection(path)
                    .await
                    .with_context(|| format!("opening SQLite database {path}"))?;
                let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
                harness
                    .run_pending_migrations(SQLITE_MIGRATIONS)
                    .map_err(|e| anyhow::anyhow!("applying SQLite migrations: {e}"))?;
            }
            Backend::Postgres => {
                let mut conn = AsyncPgConnection::establish(url)
                    .await
                    .context("connecting to PostgreSQL")?;
                diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .execute(&mut conn)
                    .await
                    .context("taking the migration lock")?;
                let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
                harness
                    .run_pending_migrations(PG_MIGRATIONS)
                    .map_err(|e| anyhow::anyhow!("applying PostgreSQL migrations: {e}"))?;
                // Closing the connection releases the advisory lock.
                drop(harness.into_inner());
            }
        }
        Ok(())
    }
}
