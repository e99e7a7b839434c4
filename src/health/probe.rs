//! The database probe behind health. It runs outside the request pool on purpose: a pool
//! saturated by load must not read as "database down", and a down database must be seen
//! without waiting for a request to time out.
//!
//! * PostgreSQL: `SELECT 1` on one dedicated connection (one extra connection per
//!   replica), reconnecting when it breaks.
//! * SQLite: a fresh read-only-if-exists open of the file (`mode=rw`, so a missing file is
//!   never re-created empty) and a read of the migrations table. An open connection would
//!   keep working on a file that was deleted or moved away, so only a new open notices.
//!
//! A failed probe is retried at once (a connection killed by an operator is not an
//! outage), then, on PostgreSQL, tried on a pooled connection (see `pooled`); health turns
//! NOT_SERVING only when those fail too.
use super::Health;
use crate::db::{connect::backend_of, Backend, Db};
use diesel::{connection::SimpleConnection, Connection, SqliteConnection};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};

/// The probe connection's `application_name` on PostgreSQL.
pub const APPLICATION_NAME: &str = "checkout-health-probe";

enum Target {
    Sqlite {
        uri: String,
        /// A probe stuck in the file system (a hung mount) is not cancelled by the timeout;
        /// this keeps it from piling up one blocking thread per period.
        busy: Arc<AtomicBool>,
    },
    Postgres {
        url: String,
        conn: Option<Box<AsyncPgConnection>>,
    },
}

impl Target {
    fn new(database_url: &str) -> anyhow::Result<Target> {
        Ok(match backend_of(database_url)? {
            Backend::Sqlite => {
                let path = database_url.trim_start_matches("sqlite://");
                // A URI filename, so `mode=rw` applies; these characters would end the path.
                let escaped = path
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23");
                Target::Sqlite {
                    uri: format!("file:{escaped}?mode=rw"),
                    busy: Arc::default(),
                }
            }
            Backend::Postgres => {
                // Named, so an operator can tell it apart in pg_stat_activity.
                let mut url = url::Url::parse(database_url)?;
                url.query_pairs_mut()
                    .append_pair("application_name", APPLICATION_NAME);
                Target::Postgres {
                    url: url.into(),
                    conn: None,
                }
            }
        })
    }

    /// One probe, bounded by `timeout`.
    async fn probe(&mut self, timeout: Duration) -> anyhow::Result<()> {
        match self {
            Target::Sqlite { uri, busy } => {
                if busy.swap(true, Ordering::AcqRel) {
                    anyhow::bail!("the previous probe is still waiting for the file system");
                }
                let (uri, busy) = (uri.clone(), busy.clone());
                let read = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let result = SqliteConnection::establish(&uri)
                        .map_err(anyhow::Error::from)
                        .and_then(|mut conn| {
                            conn.batch_execute(
                                "PRAGMA busy_timeout = 1000; \
                                 SELECT count(*) FROM __diesel_schema_migrations;",
                            )
                            .map_err(anyhow::Error::from)
                        });
                    busy.store(false, Ordering::Release);
                    result
                });
                tokio::time::timeout(timeout, read).await???;
            }
            Target::Postgres { url, conn } => {
                let result = tokio::time::timeout(timeout, async {
                    if conn.is_none() {
                        *conn = Some(Box::new(AsyncPgConnection::establish(url).await?));
                    }
                    let c = conn.as_mut().expect("just connected");
                    c.batch_execute("SELECT 1").await?;
                    anyhow::Ok(())
                })
                .await;
                if !matches!(result, Ok(Ok(()))) {
                    // Whatever it was, the next probe starts from a new connection.
                    *conn = None;
                }
                result??;
            }
        }
        Ok(())
    }
}

/// PostgreSQL only, when the probe's own connection cannot be (re)opened: the pool's. A
/// server at `max_connections` refuses new connections while the pool's keep working, and
/// that is not an outage to refuse every call for.
async fn pooled(db: &Db, timeout: Duration) -> anyhow::Result<()> {
    let Db::Postgres { pool } = db else {
        // SQLite's pooled connections keep working on a file that is gone: no fallback.
        anyhow::bail!("no fallback on SQLite");
    };
    tokio::time::timeout(timeout, async {
        let mut conn = pool.get().await?;
        conn.batch_execute("SELECT 1").await?;
        anyhow::Ok(())
    })
    .await?
}

/// Probes every `every` until `stopping`, and tells `health` when reachability changes.
pub fn spawn_probe(
    database_url: &str,
    db: Db,
    health: Health,
    every: Duration,
    mut stopping: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut target = Target::new(database_url)?;
    let timeout = every.max(Duration::from_secs(1));
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            let result = match target.probe(timeout).await {
                Ok(()) => Ok(()),
                Err(_) => match target.probe(timeout).await {
                    Err(e) => pooled(&db, timeout).await.map_err(|_| e),
                    ok => ok,
                },
            };
            if !health.set_db_reachable(result.is_ok()) {
                continue;
            }
            match result {
                Ok(()) => tracing::info!("database reachable again: health SERVING"),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "database unreachable: health NOT_SERVING, checkout calls fail with UNAVAILABLE"
                ),
            }
        }
    }))
}
