//! SQLite WAL checkpoints, off the write path.
//!
//! Why: by default the connection whose commit pushes the WAL past 1,000 pages copies the
//! WAL back into the database file and fsyncs it, inside that commit, while every other
//! writer waits in line: measured on the CreateSession statements, that was a third of the
//! single writer's time. The writer connection (`Db::Sqlite::writer`) therefore runs with
//! `wal_autocheckpoint = 0`, and this task checkpoints every [`EVERY`], on a connection of
//! its own on the blocking pool, in two steps:
//! 1. a PASSIVE checkpoint while writers go on: it copies what no reader still needs (the
//!    bulk of the work, and its fsyncs), blocking no one;
//! 2. the same again while holding the writer connection, so no commit lands in between:
//!    it copies only what was committed during step 1, and the next writer then finds the
//!    whole WAL copied and starts it over from the beginning. Without this step the WAL
//!    never restarts under a steady stream of writes and grows without bound.
//!
//! Writers wait only for step 2, ten times a second, instead of for a full checkpoint
//! every 1,000 pages (about 50 creates). It also bounds how long a commit stays unsynced
//! (`synchronous = NORMAL` syncs the WAL at each checkpoint), where before a quiet database
//! could keep commits unsynced until 1,000 pages had been written.
//!
//! Other connections (the read pool's single-statement writes, `checkout admin`) keep the
//! default automatic checkpoint; SQLite also checkpoints when the last connection closes.
use super::SqliteConn;
use diesel::{connection::SimpleConnection, Connection, SqliteConnection};
use diesel_async::pooled_connection::bb8::Pool;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often: at a few thousand creates a second this keeps the WAL to a few thousand pages.
pub const EVERY: Duration = Duration::from_millis(100);

/// The writer connection's own setting (see the module comment).
pub const WRITER_PRAGMAS: &str = "PRAGMA wal_autocheckpoint = 0;";

/// Stops the task when the last clone of the `Db` that owns it is dropped.
pub struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

pub fn spawn(path: String, writer: Pool<SqliteConn>) -> Checkpointer {
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn = Conn {
            path,
            open: None,
            failing: false,
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => return,
            }
            if !conn.checkpoint().await {
                continue;
            }
            // Step 2. A writer pool that cannot hand out its connection within its timeout
            // is busy or broken: this round is skipped, the next one tries again.
            if let Ok(_turn) = writer.get().await {
                conn.checkpoint().await;
            }
        }
    });
    Checkpointer { _stop: stop }
}

/// The checkpointer's own connection, opened when first needed and again after a failure.
struct Conn {
    path: String,
    open: Option<SqliteConnection>,
    failing: bool,
}

impl Conn {
    /// One PASSIVE checkpoint on the blocking pool; whether it ran.
    async fn checkpoint(&mut self) -> bool {
        let (held, path) = (self.open.take(), self.path.clone());
        match tokio::task::spawn_blocking(move || checkpoint(held, &path)).await {
            Ok(Ok(c)) => {
                self.open = Some(c);
                self.failing = false;
                true
            }
            // Logged once per run of failures: the database may be gone for good (a
            // deleted temporary directory), and commits do not depend on this.
            Ok(Err(e)) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying");
                }
                false
            }
            Err(_) => false, // the runtime is shutting down
        }
    }
}

fn checkpoint(conn: Option<SqliteConnection>, path: &str) -> anyhow::Result<SqliteConnection> {
    let mut conn = match conn {
        Some(c) => c,
        None => {
            let mut c = SqliteConnection::establish(path)?;
            c.batch_execute("PRAGMA busy_timeout = 5000;")?;
            c
        }
    };
    conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);")?;
    Ok(conn)
}
