//! SQLite's write-ahead log under a steady stream of writes. The writer connection does not
//! checkpoint on commit (src/db/checkpoint.rs); a background checkpointer does, and makes
//! the WAL start over. If it stopped, or only ever copied without letting the writer
//! restart the log, the WAL would keep every page ever written.
use crate::{
    fixtures::{catalog, created, line, order},
    helpers::{Ctx, TestApp},
    TestFn,
};
use diesel::{sql_types::BigInt, Connection, RunQueryDsl};
use futures_util::future::join_all;

pub fn sqlite_only() -> Vec<(&'static str, TestFn)> {
    vec![(
        "sqlite_only::sqlite_wal::wal_stays_bounded_under_steady_writes",
        |ctx| Box::pin(wal_stays_bounded_under_steady_writes(ctx)),
    )]
}

fn wal_bytes(app: &TestApp) -> u64 {
    let path = app.db.url.strip_prefix("sqlite://").unwrap();
    std::fs::metadata(format!("{path}-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// 1,600 creates from 8 concurrent writers. Each create writes about 19 pages of 4 KiB
/// (the session, its line, its key, its event, their indexes), so a WAL that never started
/// over would reach ~120 MiB; checkpointed every 100 ms it stays at what is written in a
/// few hundred milliseconds. The bound leaves room for a slow, loaded machine.
async fn wal_stays_bounded_under_steady_writes(ctx: Ctx) {
    const WRITERS: usize = 8;
    const EACH: usize = 200;
    const BOUND: u64 = 40 << 20;
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let writers = (0..WRITERS).map(|_| async {
        let mut largest = 0;
        for _ in 0..EACH {
            created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
            largest = largest.max(wal_bytes(&app));
        }
        largest
    });
    let largest = join_all(writers).await.into_iter().max().unwrap();
    assert!(
        largest < BOUND,
        "the WAL reached {largest} bytes after {} creates",
        WRITERS * EACH
    );
    // Every session is there, whatever the checkpoints did.
    let path = app.db.url.strip_prefix("sqlite://").unwrap();
    let mut conn = diesel::SqliteConnection::establish(path).unwrap();
    let stored: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM sessions)",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(stored, (WRITERS * EACH) as i64);
}
