//! Operating the service: rate limits, metrics, SIGTERM drain and trace export — the last
//! two against the real binary as a child process, as an orchestrator would run it.
use crate::{
    fixtures::{catalog, created, line, order, probe, shop},
    helpers::{assert_status, keyed, Ctx, Options, TestApp, TestDb},
    lifecycle::complete,
    watch::{next, watch},
};
use checkout::{db::Backend, pb};
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};
use tonic::Code;
use tonic_types::StatusExt;

pub async fn rate_limit_is_per_key(ctx: Ctx) {
    let app = TestApp::spawn_with(
        &ctx,
        Options {
            rate_limit: Some((1.0, 3)),
            ..Default::default()
        },
    )
    .await;
    let (a, b) = (shop(&app).await, shop(&app).await);
    for _ in 0..3 {
        let r = app
            .checkout()
            .get_session(keyed(probe(), &a.test_key, "test"))
            .await;
        assert_status(r, Code::NotFound, "Session not found");
    }
    let limited = app
        .checkout()
        .get_session(keyed(probe(), &a.test_key, "test"))
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert!(limited
        .message()
        .starts_with("Rate limit exceeded for this API key"));
    let retry = limited
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("google.rpc.RetryInfo");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1));
    // The noisy key does not starve another key, nor another key of the same store.
    let r = app
        .checkout()
        .get_session(keyed(probe(), &b.test_key, "test"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");
    let r = app
        .checkout()
        .get_session(keyed(probe(), &a.prod_key, "prod"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");
}

pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics port");
    stream
        // HTTP/1.1 keeps the connection open by default; this reads to the end.
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.parse().unwrap())
}

pub async fn metrics_show_counters_moving(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let create = "checkout_rpc_requests_total{method=\"checkout.v1.CheckoutService/CreateSession\",code=\"OK\"}";
    let before = scrape(app.metrics_addr).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    created(&app, &c, order(vec![line(&c.free, 1)], "USD")).await;
    let _ = app
        .checkout()
        .get_session(keyed(probe(), &c.shop.test_key, "test"))
        .await;
    let mut stream = watch(&app, &c.shop.test_key, &s.id).await;
    next(&mut stream).await;
    let during = scrape(app.metrics_addr).await;
    assert_eq!(
        value(&during, create) - value(&before, create),
        2.0,
        "{during}"
    );
    assert_eq!(value(&during, "checkout_rpc_requests_total{method=\"checkout.v1.CheckoutService/GetSession\",code=\"NOT_FOUND\"}"), 1.0);
    assert_eq!(
        value(
            &during,
            "checkout_sessions_created_total{outcome=\"payment_required\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            "checkout_sessions_created_total{outcome=\"free_order\"}"
        ),
        1.0
    );
    assert_eq!(value(&during, "checkout_watch_streams_open"), 1.0);
    assert!(value(&during, "checkout_rpc_duration_seconds_count{method=\"checkout.v1.CheckoutService/CreateSession\"}") >= 2.0);
    assert!(
        during.contains("checkout_db_pool_connections ")
            && during.contains("checkout_webhook_outbox_backlog ")
    );
    complete(&app, &s.id, "pay").await.unwrap();
    next(&mut stream).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = scrape(app.metrics_addr).await;
    assert_eq!(
        value(
            &after,
            "checkout_session_transitions_total{status=\"completed\"}"
        ),
        2.0,
        "free order and payment"
    );
    assert_eq!(value(&after, "checkout_watch_streams_open"), 0.0);
}

/// The binary, started as a deployment would start it, on a test database.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    /// Every line it printed on stdout after the first, as it prints them.
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Every line of its log (stderr), as it writes them.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Service {
    pub fn start(db: &TestDb, token: &str, env: &[(&str, &str)]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_checkout"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("CHECKOUT_LISTEN_ADDR", "127.0.0.1:0")
            .env("CHECKOUT_PLATFORM_TOKEN", token)
            .env("CHECKOUT_SECRETS_KEY", &db.secrets_key)
            .env("CHECKOUT_DEMO_SEED", "false")
            .env("CHECKOUT_RATE_LIMIT_PER_SECOND", "0")
            .env("CHECKOUT_SHUTDOWN_DELAY_SECONDS", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the checkout binary");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let log = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            log.lines()
                .map_while(Result::ok)
                .for_each(|l| sink.lock().unwrap().push(l))
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("banner").expect("stdout");
        // Keep reading, as a terminal would: a closed pipe would kill the service's println.
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            lines
                .map_while(Result::ok)
                .for_each(|l| sink.lock().unwrap().push(l))
        });
        let addr = first
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .expect("the banner names the address");
        Service {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), as a crash or the OOM killer would end
    /// it: no shutdown, no drain. Returns once the process is gone.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap the killed service");
    }

    /// Waits for the process to exit; its exit status.
    pub async fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the service did not stop within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of a running service, provisioned through AdminService like an operator would.
pub async fn client_app(db: std::sync::Arc<TestDb>, svc: &Service, token: &str) -> TestApp {
    // Reuse TestApp's clients against the child: same database, same token.
    let mut app = TestApp::spawn_on(
        db,
        Options {
            platform_token: token.into(),
            webhook_dispatcher: false,
            ..Default::default()
        },
    )
    .await;
    app.channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    app
}

/// Holds the database's write lock, so writes queue inside the service until released.
enum WriteLock {
    Sqlite(checkout::db::SqliteConn),
    Postgres(Box<diesel_async::AsyncPgConnection>),
}

impl WriteLock {
    async fn take(db: &TestDb) -> WriteLock {
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        match db.backend {
            Backend::Sqlite => {
                let mut c =
                    checkout::db::SqliteConn::establish(db.url.strip_prefix("sqlite://").unwrap())
                        .await
                        .unwrap();
                c.batch_execute("BEGIN EXCLUSIVE").await.unwrap();
                WriteLock::Sqlite(c)
            }
            Backend::Postgres => {
                let mut c = diesel_async::AsyncPgConnection::establish(&db.url)
                    .await
                    .unwrap();
                c.batch_execute("BEGIN; LOCK TABLE sessions IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                WriteLock::Postgres(Box::new(c))
            }
        }
    }

    async fn release(self) {
        use diesel_async::SimpleAsyncConnection;
        match self {
            WriteLock::Sqlite(mut c) => c.batch_execute("COMMIT").await.unwrap(),
            WriteLock::Postgres(mut c) => c.batch_execute("COMMIT").await.unwrap(),
        }
    }
}

/// SIGTERM while 20 CreateSession calls are in flight: every one of them completes, the
/// service stops accepting new work, and exits cleanly.
pub async fn sigterm_loses_no_calls_in_flight(ctx: Ctx) {
    let db = TestDb::create(&ctx).await;
    let token = format!("pt_{}", checkout::domain::ids::random_base62(40));
    let svc = Service::start(&db, &token, &[("CHECKOUT_SHUTDOWN_GRACE_SECONDS", "10")]);
    let app = client_app(db.clone(), &svc, &token).await;
    let c = catalog(&app).await;
    let lock = WriteLock::take(&db).await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut client = app.checkout();
            let req = keyed(
                order(vec![line(&c.widget, 1)], "USD"),
                &c.shop.test_key,
                "test",
            );
            tokio::spawn(async move { client.create_session(req).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;
    for call in calls {
        let reply = call.await.unwrap().expect("an in-flight call completes");
        assert_eq!(
            reply.into_inner().session.unwrap().status,
            pb::SessionStatus::Open as i32
        );
    }
    let status = svc.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "clean exit: {status:?}");
}

pub mod otlp {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use std::sync::{Arc, Mutex};

    /// (name, trace id, parent span id, status code (0 unset, 2 error), service.name)
    pub type Received = (String, Vec<u8>, Vec<u8>, i32, String);

    /// Every span received.
    #[derive(Clone, Default)]
    pub struct Collector(pub Arc<Mutex<Vec<Received>>>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut spans = self.0.lock().unwrap();
            for rs in req.into_inner().resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()?.value.as_ref())
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        let status = s.status.map_or(0, |st| st.code);
                        let span = (
                            s.name,
                            s.trace_id,
                            s.parent_span_id,
                            status,
                            service.clone(),
                        );
                        spans.push(span);
                    }
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    pub async fn start() -> (Collector, std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }
}

/// A CreateSession carrying a W3C traceparent produces a span, exported over OTLP/gRPC to a
/// real receiver, whose trace id and parent are the caller's.
pub async fn traces_reach_an_otlp_collector(ctx: Ctx) {
    let (collector, collector_addr) = otlp::start().await;
    let db = TestDb::create(&ctx).await;
    let token = format!("pt_{}", checkout::domain::ids::random_base62(40));
    let endpoint = format!("http://{collector_addr}");
    let svc = Service::start(
        &db,
        &token,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("RUST_LOG", "info"),
        ],
    );
    let app = client_app(db.clone(), &svc, &token).await;
    let c = catalog(&app).await;
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut req = keyed(
        order(vec![line(&c.widget, 1)], "USD"),
        &c.shop.test_key,
        "test",
    );
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    app.checkout().create_session(req).await.expect("create");
    svc.sigterm();
    assert!(svc.wait(Duration::from_secs(10)).await.success());
    let spans = collector.0.lock().unwrap().clone();
    let span = spans
        .iter()
        .find(|(name, ..)| name == "checkout.v1.CheckoutService/CreateSession")
        .unwrap_or_else(|| {
            panic!(
                "no CreateSession span among {:?}",
                spans.iter().map(|s| &s.0).collect::<Vec<_>>()
            )
        });
    assert_eq!(hex::encode(&span.1), trace_id, "the caller's trace");
    assert_eq!(
        hex::encode(&span.2),
        parent_id,
        "the caller's span is the parent"
    );
}
