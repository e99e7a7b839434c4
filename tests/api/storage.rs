//! What is stored, and how: secrets hashed, seed once, data survives restarts, the two
//! migration sets in step, storage outages surfaced as UNAVAILABLE.
use crate::{
    fixtures::{create_key, create_store, probe},
    helpers::{assert_status, keyed, slugged, Ctx, Options, TestApp, TestDb},
    TestFn,
};
use checkout::{db::Backend, pb};
use diesel::{sql_types::Text, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::time::Duration;
use tonic::Code;

/// Everything the database holds, as bytes: the SQLite files, or a pg_dump.
pub(crate) fn dump(db: &TestDb) -> Vec<u8> {
    match db.backend {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                    all.extend(bytes);
                }
            }
            all
        }
        Backend::Postgres => {
            let out = std::process::Command::new("pg_dump")
                .args(["--data-only", "-d", &db.url])
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

pub async fn no_plaintext_api_key_in_storage(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let key = create_key(&app, &store.id, pb::Environment::Test).await;
    // Use it once, so nothing on the auth path writes it anywhere either.
    let r = app
        .checkout()
        .get_session(keyed(probe(), &key.secret, "test"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");
    let bytes = dump(&app.db);
    assert!(
        contains(&bytes, &store.id),
        "the dump holds the data (sanity check)"
    );
    let hash = checkout::domain::store::hash_secret(&key.secret);
    assert!(contains(&bytes, &hash), "the SHA-256 of the key is stored");
    let random_part = key.secret.trim_start_matches("sk_test_");
    assert!(
        !contains(&bytes, random_part),
        "the secret itself is never stored"
    );
}

pub async fn demo_seed_runs_once_and_works(ctx: Ctx) {
    let seeded = Options {
        demo_seed: true,
        ..Default::default()
    };
    let app = TestApp::spawn_with(&ctx, seeded.clone()).await;
    let key = app
        .app_seed_api_key
        .clone()
        .expect("an empty database is seeded");
    let r = app
        .checkout()
        .get_session(keyed(probe(), &key, "test"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");
    let r = app
        .checkout()
        .get_session(slugged(probe(), "demo", "test"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");
    let db = app.db.clone();
    app.stop(Duration::from_secs(5)).await;
    let again = TestApp::spawn_on(db, seeded).await;
    assert!(
        again.app_seed_api_key.is_none(),
        "a database with a store is not seeded again"
    );
    let r = again
        .checkout()
        .get_session(keyed(probe(), &key, "test"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");
}

pub async fn restart_keeps_data(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let (db, opts) = (
        app.db.clone(),
        Options {
            platform_token: app.platform_token.clone(),
            ..Default::default()
        },
    );
    app.stop(Duration::from_secs(5)).await;
    let app = TestApp::spawn_on(db, opts).await;
    let get = pb::GetStoreRequest {
        store_id: store.id.clone(),
    };
    let fetched = app
        .admin()
        .get_store(app.platform(get))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, store);
}

pub fn postgres_only() -> Vec<(&'static str, TestFn)> {
    vec![
        ("postgres_only::storage::schema_matches_sqlite", |ctx| {
            Box::pin(schema_matches_sqlite(ctx))
        }),
        (
            "postgres_only::storage::storage_down_is_unavailable",
            |ctx| Box::pin(storage_down_is_unavailable(ctx)),
        ),
    ]
}

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    nullable: String,
}

/// migrations/sqlite and migrations/postgres define the same tables and columns, with the
/// same types and nullability, so one schema.rs serves both.
async fn schema_matches_sqlite(ctx: Ctx) {
    let pg = TestDb::create(&ctx).await;
    checkout::db::Db::migrate(&pg.url).await.unwrap();
    let sqlite = TestDb::create(&Ctx {
        backend: Backend::Sqlite,
        pg_url: None,
    })
    .await;
    checkout::db::Db::migrate(&sqlite.url).await.unwrap();

    let mut conn = AsyncPgConnection::establish(&pg.url).await.unwrap();
    let mut pg_cols: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text AS nullable
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let path = sqlite.url.strip_prefix("sqlite://").unwrap();
    let mut lite = checkout::db::SqliteConn::establish(path).await.unwrap();
    let lite_cols: Vec<Column> = diesel::sql_query(
        "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type,
                CASE WHEN p.\"notnull\" = 1 THEN 'NO' ELSE 'YES' END AS nullable
         FROM sqlite_master m JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '__diesel_schema_migrations'",
    )
    .load(&mut lite)
    .await
    .unwrap();
    let mut lite_cols: Vec<Column> = lite_cols
        .into_iter()
        .map(|c| Column {
            data_type: c.data_type.to_lowercase(),
            ..c
        })
        .collect();
    pg_cols.sort();
    lite_cols.sort();
    assert!(pg_cols.len() > 50, "introspection found the tables");
    assert_eq!(pg_cols, lite_cols);
}

/// With PostgreSQL refusing connections, calls fail with UNAVAILABLE (retryable) and no
/// internals; once it is back, the same server recovers without a restart.
async fn storage_down_is_unavailable(ctx: Ctx) {
    let app = TestApp::spawn_with(
        &ctx,
        Options {
            connect_timeout_ms: 500,
            ..Default::default()
        },
    )
    .await;
    let store = create_store(&app, true, true).await;
    let admin_url = ctx.pg_url.clone().unwrap();
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    let mut conn = AsyncPgConnection::establish(&admin_url).await.unwrap();
    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let get = || {
        app.platform(pb::GetStoreRequest {
            store_id: store.id.clone(),
        })
    };
    let r = app.admin().get_store(get()).await;
    assert_status(
        r,
        Code::Unavailable,
        "Service temporarily unavailable, retry with backoff",
    );
    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&mut conn)
        .await
        .unwrap();
    // As a client would (UNAVAILABLE is retryable): a connection attempt that began while
    // the database refused connections may still be backing off for a moment.
    let mut fetched = app.admin().get_store(get()).await;
    for _ in 0..20 {
        match &fetched {
            Err(s) if s.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                fetched = app.admin().get_store(get()).await;
            }
            _ => break,
        }
    }
    let fetched = fetched.expect("recovers once the database is back");
    assert_eq!(fetched.into_inner().id, store.id);
}
