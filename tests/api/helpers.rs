//! `TestApp`: a real server on 127.0.0.1:0 over a real database of its own (a SQLite file in
//! a temp dir, or a PostgreSQL database created for the test and dropped afterwards).
use checkout::{
    config::{ConnConfig, DbConfig, LimitsConfig, LogConfig, ServeConfig, TlsConfig},
    db::Backend,
    pb::{
        admin_service_client::AdminServiceClient, checkout_service_client::CheckoutServiceClient,
        hosted_checkout_service_client::HostedCheckoutServiceClient,
    },
    secrets::SecretsConfig,
    startup::Application,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{metadata::MetadataValue, transport::Channel, Code, Request, Status};

/// Which database a test runs on; Postgres only when TEST_DATABASE_URL is set.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub backend: Backend,
    pub pg_url: Option<String>,
}

/// A database that exists for one test and is removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// The secrets key every server on this database gets unless a test says otherwise
    /// (replicas must share it).
    pub secrets_key: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>, // (admin url, database name)
}

impl TestDb {
    pub async fn create(ctx: &Ctx) -> Arc<TestDb> {
        match ctx.backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("checkout.db").display());
                Arc::new(TestDb {
                    url,
                    backend: Backend::Sqlite,
                    secrets_key: new_secrets_key(),
                    _dir: Some(dir),
                    pg: None,
                })
            }
            Backend::Postgres => {
                let admin = ctx.pg_url.clone().expect("TEST_DATABASE_URL");
                let name = format!(
                    "checkout_test_{}",
                    checkout::domain::ids::random_base62(12).to_lowercase()
                );
                let mut conn = AsyncPgConnection::establish(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}")
                    });
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                Arc::new(TestDb {
                    url: url.to_string(),
                    backend: Backend::Postgres,
                    secrets_key: new_secrets_key(),
                    _dir: None,
                    pg: Some((admin, name)),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside any runtime we may block, so use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = AsyncPgConnection::establish(&admin).await {
                        let _ = diesel::sql_query(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                })
            })
            .join();
        }
    }
}

/// A random `CHECKOUT_SECRETS_KEY`.
pub fn new_secrets_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// The secrets keys a server starts with.
#[derive(Clone)]
pub enum SecretsKey {
    /// The database's own key (`TestDb::secrets_key`).
    Shared,
    /// None: on SQLite the key file beside the database.
    Unset,
    /// This key, and these earlier keys (comma-separated).
    Given(String, Option<String>),
}

/// Knobs a test may turn; everything else is the production default.
#[derive(Clone)]
pub struct Options {
    pub demo_seed: bool,
    pub webhook_allow_private_targets: bool,
    pub connect_timeout_ms: u64,
    pub platform_token: String,
    pub webhook_dispatcher: bool,
    pub webhook_max_attempts: u32,
    /// (calls per second, burst) per API key; `None`: no limit.
    pub rate_limit: Option<(f64, u32)>,
    pub secrets_key: SecretsKey,
    /// Timeouts and sizes of the metrics listener.
    pub metrics_limits: checkout::metrics::http::ListenerLimits,
    /// (failed authentications per minute, burst) per peer address; `None`: no limit.
    pub auth_failures: Option<(u32, u32)>,
    pub health_probe_ms: u64,
    pub shutdown_delay_seconds: u64,
    pub shutdown_grace_seconds: u64,
    /// (open connections at most, handshake timeout in ms).
    pub connections: (usize, u64),
    /// CHECKOUT_CORS_ORIGINS.
    pub cors_origins: Vec<String>,
    /// TLS on the gRPC listener; `TestApp::channel` is then unusable (tests make their own).
    pub tls: Option<TlsConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            demo_seed: false,
            webhook_allow_private_targets: false,
            connect_timeout_ms: 5000,
            platform_token: format!("pt_{}", checkout::domain::ids::random_base62(40)),
            webhook_dispatcher: true,
            webhook_max_attempts: 15,
            rate_limit: None,
            secrets_key: SecretsKey::Shared,
            metrics_limits: Default::default(),
            auth_failures: None,
            health_probe_ms: 1000,
            shutdown_delay_seconds: 0,
            shutdown_grace_seconds: 5,
            connections: (10_000, 5_000),
            cors_origins: Vec::new(),
            tls: None,
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub platform_token: String,
    pub db: Arc<TestDb>,
    pub channel: Channel,
    pub app_seed_api_key: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub fn serve_config(db: &TestDb, opts: &Options) -> ServeConfig {
    ServeConfig {
        db: DbConfig {
            database_url: db.url.clone(),
            db_pool_size: 8,
            db_connect_timeout_ms: opts.connect_timeout_ms,
        },
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        platform_token: Some(opts.platform_token.clone()),
        hosted_url_template: "https://pay.example.test/s/{CHECKOUT_SESSION_ID}".into(),
        demo_seed: Some(opts.demo_seed),
        webhook_allow_private_targets: opts.webhook_allow_private_targets,
        shutdown_grace_seconds: opts.shutdown_grace_seconds,
        max_decoding_message_bytes: 256 * 1024,
        max_concurrent_streams: 1024,
        idempotency_retention_hours: 72,
        cors_origins: opts.cors_origins.clone(),
        event_retention_days: 30,
        webhooks: checkout::dispatch::DispatchConfig {
            webhook_dispatcher: opts.webhook_dispatcher,
            webhook_poll_ms: 50,
            webhook_timeout_ms: 2_000,
            webhook_retry_base_ms: 100,
            webhook_retry_max_ms: 1_000,
            webhook_max_attempts: opts.webhook_max_attempts,
        },
        limits: LimitsConfig {
            rate_limit_per_second: opts.rate_limit.map_or(0.0, |(rate, _)| rate),
            rate_limit_burst: opts.rate_limit.map_or(1, |(_, burst)| burst),
            auth_failures_per_minute: opts.auth_failures.map_or(0, |(rate, _)| rate),
            auth_failures_burst: opts.auth_failures.map_or(1, |(_, burst)| burst),
            request_timeout_ms: 30_000,
        },
        health: checkout::health::HealthConfig {
            health_probe_ms: opts.health_probe_ms,
            shutdown_delay_seconds: Some(opts.shutdown_delay_seconds),
        },
        conn: ConnConfig {
            max_connections: opts.connections.0,
            handshake_timeout_ms: opts.connections.1,
        },
        log: LogConfig {
            log_format: "text".into(),
            otlp_endpoint: None,
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            metrics_limits: opts.metrics_limits.clone(),
        },
        secrets: match &opts.secrets_key {
            SecretsKey::Shared => SecretsConfig {
                secrets_key: Some(db.secrets_key.clone()),
                secrets_old_keys: None,
            },
            SecretsKey::Unset => SecretsConfig::default(),
            SecretsKey::Given(key, old) => SecretsConfig {
                secrets_key: Some(key.clone()),
                secrets_old_keys: old.clone(),
            },
        },
        tls: opts.tls.clone().unwrap_or_default(),
    }
}

impl TestApp {
    pub async fn spawn(ctx: &Ctx) -> TestApp {
        Self::spawn_with(ctx, Options::default()).await
    }

    pub async fn spawn_with(ctx: &Ctx, opts: Options) -> TestApp {
        Self::spawn_on(TestDb::create(ctx).await, opts).await
    }

    /// Another server over an existing database (replicas, restarts).
    pub async fn spawn_on(db: Arc<TestDb>, opts: Options) -> TestApp {
        let app = Application::build(serve_config(&db, &opts))
            .await
            .expect("build application");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr().expect("metrics listener");
        let seed_key = app.demo_seed().map(|s| s.api_key.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
        let channel = match opts.tls {
            Some(_) => endpoint.connect_lazy(),
            None => endpoint.connect().await.expect("connect"),
        };
        TestApp {
            addr,
            metrics_addr,
            platform_token: opts.platform_token,
            db,
            channel,
            app_seed_api_key: seed_key,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A second server (replica) over this one's database, sharing its platform token.
    pub async fn replica(&self) -> TestApp {
        let opts = Options {
            platform_token: self.platform_token.clone(),
            ..Default::default()
        };
        Self::spawn_on(self.db.clone(), opts).await
    }

    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn checkout(&self) -> CheckoutServiceClient<Channel> {
        CheckoutServiceClient::new(self.channel.clone())
    }

    pub fn hosted(&self) -> HostedCheckoutServiceClient<Channel> {
        HostedCheckoutServiceClient::new(self.channel.clone())
    }

    /// A request carrying the platform token.
    pub fn platform<T>(&self, msg: T) -> Request<T> {
        with_md(
            msg,
            &[("authorization", &format!("Bearer {}", self.platform_token))],
        )
    }

    /// Runs one SQL statement on the test database: for setting up states that only time
    /// would produce (a session past its expiry), never for checking results.
    pub async fn sql(&self, statement: &str) {
        match self.db.backend {
            Backend::Sqlite => {
                let path = self.db.url.strip_prefix("sqlite://").unwrap();
                let mut conn = checkout::db::SqliteConn::establish(path).await.unwrap();
                diesel::sql_query(statement)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let mut conn = AsyncPgConnection::establish(&self.db.url).await.unwrap();
                diesel::sql_query(statement)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }

    /// Moves a session's expiry into the past, as if its TTL had run out.
    pub async fn backdate_expiry(&self, session_id: &str) {
        let past = checkout::domain::time::Timestamp::now().0 - 1_000_000;
        self.sql(&format!(
            "UPDATE sessions SET expires_at = {past} WHERE id = '{session_id}'"
        ))
        .await;
    }

    /// Holds the database's write lock until `WriteBlock::release`: writers (the sweeper
    /// among them) wait, readers do not. For proving that something happened without a
    /// write, such as watchers seeing an expiry the sweeper could not write yet.
    pub async fn block_writes(&self) -> WriteBlock {
        match self.db.backend {
            Backend::Sqlite => {
                let path = self.db.url.strip_prefix("sqlite://").unwrap();
                let mut conn = checkout::db::SqliteConn::establish(path).await.unwrap();
                // Wait for a write the server may be doing rather than fail.
                conn.batch_execute("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE")
                    .await
                    .unwrap();
                WriteBlock::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = AsyncPgConnection::establish(&self.db.url).await.unwrap();
                // EXCLUSIVE conflicts with UPDATE and SELECT … FOR UPDATE, not with SELECT.
                conn.batch_execute("BEGIN; LOCK TABLE sessions IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                WriteBlock::Postgres(Box::new(conn))
            }
        }
    }

    /// Stops the server as SIGTERM would and waits for it; panics if it takes over `limit`.
    pub async fn stop(mut self, limit: Duration) {
        let _ = self.shutdown.take().unwrap().send(());
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(limit, handle)
            .await
            .expect("server stopped within the limit")
            .expect("server task")
            .expect("server result");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// A write lock held on a test database (see `TestApp::block_writes`).
pub enum WriteBlock {
    Sqlite(checkout::db::SqliteConn),
    Postgres(Box<AsyncPgConnection>),
}

impl WriteBlock {
    pub async fn release(self) {
        match self {
            WriteBlock::Sqlite(mut conn) => conn.batch_execute("ROLLBACK").await.unwrap(),
            WriteBlock::Postgres(mut conn) => conn.batch_execute("ROLLBACK").await.unwrap(),
        }
    }
}

/// A request with metadata.
pub fn with_md<T>(msg: T, md: &[(&str, &str)]) -> Request<T> {
    let mut req = Request::new(msg);
    for (k, v) in md {
        let value: MetadataValue<_> = v.parse().expect("ascii metadata");
        let key: tonic::metadata::MetadataKey<_> = k.parse().expect("metadata key");
        req.metadata_mut().insert(key, value);
    }
    req
}

/// A CheckoutService request with a secret key and an environment header.
pub fn keyed<T>(msg: T, key: &str, env: &str) -> Request<T> {
    with_md(
        msg,
        &[
            ("authorization", &format!("Bearer {key}")),
            ("x-context-environment", env),
        ],
    )
}

/// A CheckoutService request with publishable slug auth.
pub fn slugged<T>(msg: T, slug: &str, env: &str) -> Request<T> {
    with_md(
        msg,
        &[("x-store-slug", slug), ("x-context-environment", env)],
    )
}

/// Asserts the code and the exact message of a failed call.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    message: &str,
) -> Status {
    let status = result.expect_err("expected the call to fail");
    assert_eq!(
        (status.code(), status.message()),
        (code, message),
        "{status:?}"
    );
    status
}

/// The field names of the `google.rpc.BadRequest` violations of an INVALID_ARGUMENT.
pub fn bad_request_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    let details = status.get_error_details();
    let bad = details
        .bad_request()
        .expect("google.rpc.BadRequest details");
    bad.field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}
