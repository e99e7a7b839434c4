//! Health follows the database and shutdown: NOT_SERVING while the database is unreachable
//! (calls fail fast meanwhile), NOT_SERVING first on shutdown while the server still serves
//! for the shutdown delay, and open Health/Watch streams end instead of holding shutdown.
use crate::{
    fixtures::create_store,
    helpers::{assert_status, with_md, Ctx, Options, TestApp, TestDb},
    operations::Service,
};
use checkout::{db::Backend, pb};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::time::{Duration, Instant};
use tonic::{transport::Channel, Code, Streaming};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    HealthCheckResponse,
};

const NAMES: [&str; 4] = [
    "",
    "checkout.v1.CheckoutService",
    "checkout.v1.HostedCheckoutService",
    "checkout.v1.AdminService",
];
const UNAVAILABLE: &str = "Service temporarily unavailable, retry with backoff";

async fn check(channel: &Channel, service: &str) -> ServingStatus {
    let reply = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("Health/Check answers")
        .into_inner();
    ServingStatus::try_from(reply.status).unwrap()
}

/// Polls until every name reports `want` (generous: the machine may be loaded).
async fn wait_all(channel: &Channel, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for name in NAMES {
        loop {
            let got = check(channel, name).await;
            if got == want {
                break;
            }
            assert!(Instant::now() < deadline, "{name:?} stayed {got:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn open_watch(channel: &Channel) -> Streaming<HealthCheckResponse> {
    HealthClient::new(channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .expect("Health/Watch")
        .into_inner()
}

/// The next status a Watch stream sends.
async fn next_status(watch: &mut Streaming<HealthCheckResponse>) -> ServingStatus {
    let msg = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("a Watch message in time")
        .expect("a status, not an error")
        .expect("the stream is open");
    ServingStatus::try_from(msg.status).unwrap()
}

/// A real storage fault. Postgres: the test database refuses connections and its backends
/// are terminated. SQLite: the database file is moved away (open connections would keep
/// working on it, but a new open finds nothing: what a deleted or misplaced file does).
struct Outage {
    ctx: Ctx,
    url: String,
}

impl Outage {
    async fn start(app: &TestApp, ctx: &Ctx) -> Outage {
        let outage = Outage {
            ctx: ctx.clone(),
            url: app.db.url.clone(),
        };
        match ctx.backend {
            Backend::Sqlite => {
                let path = outage.sqlite_path();
                std::fs::rename(&path, format!("{path}.away")).unwrap();
            }
            Backend::Postgres => {
                let name = outage.pg_name();
                outage
                    .pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .await;
                outage
                    .pg_admin(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    ))
                    .await;
            }
        }
        outage
    }

    async fn end(self) {
        match self.ctx.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path();
                std::fs::rename(format!("{path}.away"), &path).unwrap();
            }
            Backend::Postgres => {
                let name = self.pg_name();
                self.pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .await;
            }
        }
    }

    fn sqlite_path(&self) -> String {
        self.url.strip_prefix("sqlite://").unwrap().to_owned()
    }

    fn pg_name(&self) -> String {
        self.url.rsplit('/').next().unwrap().to_owned()
    }

    async fn pg_admin(&self, sql: &str) {
        let admin = self.ctx.pg_url.clone().unwrap();
        let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
}

pub async fn database_outage_is_not_serving(ctx: Ctx) {
    let app = TestApp::spawn_with(
        &ctx,
        Options {
            health_probe_ms: 200,
            connect_timeout_ms: 5000,
            ..Default::default()
        },
    )
    .await;
    let store = create_store(&app, true, true).await;
    let get = || {
        app.platform(pb::GetStoreRequest {
            store_id: store.id.clone(),
        })
    };
    wait_all(&app.channel, ServingStatus::Serving).await;
    let mut watch = open_watch(&app.channel).await;
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);

    let outage = Outage::start(&app, &ctx).await;
    wait_all(&app.channel, ServingStatus::NotServing).await;
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    // Calls fail at once instead of waiting the 5 s connect timeout.
    let started = Instant::now();
    assert_status(
        app.admin().get_store(get()).await,
        Code::Unavailable,
        UNAVAILABLE,
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "failed fast: {:?}",
        started.elapsed()
    );

    outage.end().await;
    wait_all(&app.channel, ServingStatus::Serving).await;
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    // As a client would (UNAVAILABLE is retryable): pooled connections the outage broke are
    // replaced on their next use.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fetched = loop {
        match app.admin().get_store(get()).await {
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other.expect("served again once the database is back"),
        }
    };
    assert_eq!(fetched.into_inner(), store);
}

/// The stream ends with UNAVAILABLE once the server drains.
async fn assert_watch_ends(watch: &mut Streaming<HealthCheckResponse>) {
    let end = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("the Watch stream ends in time");
    match end {
        Err(status) => assert_eq!(
            (status.code(), status.message()),
            (
                Code::Unavailable,
                "server is shutting down; watch again to reach another replica"
            )
        ),
        Ok(other) => panic!("expected the stream to end with UNAVAILABLE, got {other:?}"),
    }
}

/// SIGTERM to the binary with a shutdown delay: NOT_SERVING at once, on existing
/// connections and on new ones, which are still accepted and served; then the Watch stream
/// ends and the process drains and exits, far sooner than the grace period an open Watch
/// used to hold it for.
pub async fn shutdown_delay_serves_then_drains(ctx: Ctx) {
    let delay = Duration::from_secs(3);
    let grace = Duration::from_secs(30);
    let db = TestDb::create(&ctx).await;
    let token = format!("pt_{}", checkout::domain::ids::random_base62(40));
    let svc = Service::start(
        &db,
        &token,
        &[
            ("CHECKOUT_SHUTDOWN_DELAY_SECONDS", "3"),
            ("CHECKOUT_SHUTDOWN_GRACE_SECONDS", "30"),
        ],
    );
    let channel = connect(svc.addr).await;
    let mut watch = open_watch(&channel).await;
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);

    let signalled = Instant::now();
    svc.sigterm();
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    for name in NAMES {
        assert_eq!(check(&channel, name).await, ServingStatus::NotServing);
    }
    // A new connection during the delay is accepted and served.
    let fresh = connect(svc.addr).await;
    assert_eq!(check(&fresh, "").await, ServingStatus::NotServing);
    let req = with_md(
        pb::CreateStoreRequest {
            slug: crate::fixtures::unique_slug("late"),
            name: "Late".into(),
            ..Default::default()
        },
        &[("authorization", &format!("Bearer {token}"))],
    );
    pb::admin_service_client::AdminServiceClient::new(fresh)
        .create_store(req)
        .await
        .expect("served during the shutdown delay");
    assert!(
        signalled.elapsed() < delay,
        "the checks above ran within the delay ({:?}); the machine is too slow for this test",
        signalled.elapsed()
    );

    assert_watch_ends(&mut watch).await;
    assert!(
        signalled.elapsed() >= delay,
        "the stream ended only after the delay"
    );
    let status = svc.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit: {status:?}");
    let took = signalled.elapsed();
    assert!(took >= delay && took < grace / 2, "stopped after {took:?}");
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("a new connection is accepted")
}

/// The default (no delay): an open Health/Watch stream gets NOT_SERVING, then ends, and
/// does not hold the shutdown for the grace period.
pub async fn open_watch_does_not_hold_shutdown(ctx: Ctx) {
    let grace = Duration::from_secs(20);
    let app = TestApp::spawn_with(
        &ctx,
        Options {
            shutdown_grace_seconds: grace.as_secs(),
            ..Default::default()
        },
    )
    .await;
    let mut watch = open_watch(&app.channel).await;
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let started = Instant::now();
    let stopping = tokio::spawn(app.stop(Duration::from_secs(10)));
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    assert_watch_ends(&mut watch).await;
    stopping.await.expect("stopped within 10 s");
    assert!(started.elapsed() < grace / 2, "{:?}", started.elapsed());
}

pub fn postgres_only() -> Vec<(&'static str, crate::TestFn)> {
    vec![(
        "postgres_only::health::refused_new_connections_alone_are_not_an_outage",
        |ctx| Box::pin(refused_new_connections_alone_are_not_an_outage(ctx)),
    )]
}

/// PostgreSQL refusing new connections (as at `max_connections`) while the pool's still
/// work is not an outage: when the probe's own connection is lost and cannot be reopened,
/// the probe asks the pool, and health stays SERVING with calls served.
async fn refused_new_connections_alone_are_not_an_outage(ctx: Ctx) {
    let app = TestApp::spawn_with(
        &ctx,
        Options {
            health_probe_ms: 100,
            ..Default::default()
        },
    )
    .await;
    let store = create_store(&app, true, true).await;
    let get = || {
        app.platform(pb::GetStoreRequest {
            store_id: store.id.clone(),
        })
    };
    app.admin().get_store(get()).await.expect("pool warm");
    let outage = Outage {
        ctx: ctx.clone(),
        url: app.db.url.clone(),
    };
    let name = outage.pg_name();
    // Wait for the probe's connection to exist, then refuse new connections and end it.
    let probe = checkout::health::probe::APPLICATION_NAME;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = count(
            &ctx,
            &format!(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = '{name}' AND application_name = '{probe}'"
            ),
        )
        .await;
        if open == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the probe never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    outage
        .pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await;
    let terminated = count(
        &ctx,
        &format!(
            "SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) AS ended \
             FROM pg_stat_activity WHERE datname = '{name}' AND application_name = '{probe}') t \
             WHERE t.ended"
        ),
    )
    .await;
    assert_eq!(terminated, 1, "the probe's connection was ended");
    // Many probe periods: each fails to reconnect, falls back to the pool, and succeeds.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for service in NAMES {
            assert_eq!(check(&app.channel, service).await, ServingStatus::Serving);
        }
        app.admin().get_store(get()).await.expect("still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconnected = count(
        &ctx,
        &format!(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = '{name}' AND application_name = '{probe}'"
        ),
    )
    .await;
    assert_eq!(reconnected, 0, "the probe could not reconnect meanwhile");
    outage
        .pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// One `count(*) AS n` query on the admin database.
async fn count(ctx: &Ctx, sql: &str) -> i64 {
    let admin = ctx.pg_url.clone().unwrap();
    let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
    let rows: Vec<Count> = diesel::sql_query(sql).load(&mut conn).await.unwrap();
    rows[0].n
}
