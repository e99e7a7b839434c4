//! The metrics listener: what it serves (a valid exposition with the service's and the
//! process's metrics) and how it treats hostile or idle clients (oversized heads refused in
//! bounded memory, idle and trickling connections closed, a cap on connections, a clean stop).
use crate::{
    exposition::{histogram_count, parse},
    fixtures::{catalog, created, line, order, probe},
    helpers::{keyed, Ctx, Options, TestApp, TestDb},
    operations::scrape,
    raw_h2::{frame, RawClient},
};
use checkout::metrics::http::ListenerLimits;
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A deadline no healthy run comes near, on a loaded machine too.
const PATIENCE: Duration = Duration::from_secs(30);

/// Sends `request`, then reads until the server closes the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("metrics port");
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(reply).unwrap()
}

/// Waits for the server to close `stream` (EOF or reset), reading whatever it sends.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server left the connection open");
    reply
}

fn limits(header_read_timeout: Duration, max_connections: usize) -> Options {
    Options {
        metrics_limits: ListenerLimits {
            header_read_timeout,
            max_connections,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn status_file_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

pub async fn exposition_is_valid_with_process_metrics(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let _ = app
        .checkout()
        .get_session(keyed(probe(), &c.shop.test_key, "test"))
        .await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    // Paths the server does not serve share one label, however many there are.
    let mut raw = RawClient::connect(app.addr).await;
    for path in [
        "/checkout.v1.CheckoutService/Nope",
        "/x.Y/Z",
        "/checkout.v1.Nope/A",
    ] {
        let reply = raw.call(path, &[], frame(0, b"")).await;
        assert!(reply.code.is_some_and(|c| c != 0), "{path}");
    }
    let reply = scrape(app.metrics_addr).await;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let families = parse(body);
    let kinds = [
        ("checkout_rpc_requests_total", "counter"),
        ("checkout_rpc_duration_seconds", "histogram"),
        ("checkout_sessions_created_total", "counter"),
        ("checkout_watch_session_reads_total", "counter"),
        ("checkout_watch_streams_open", "gauge"),
        ("checkout_webhook_outbox_backlog", "gauge"),
        ("checkout_db_pool_connections", "gauge"),
        ("checkout_db_pool_idle_connections", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_threads", "gauge"),
    ];
    for (name, kind) in kinds {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name}: {body}"));
        assert_eq!(family.kind, kind, "{name}");
        assert!(!family.samples.is_empty(), "{name}");
    }
    let method = "checkout.v1.CheckoutService/CreateSession";
    let series = BTreeMap::from([("method".to_owned(), method.to_owned())]);
    let calls = &families["checkout_rpc_requests_total"].samples;
    let methods: Vec<&str> = calls.iter().map(|s| s.labels["method"].as_str()).collect();
    let health = "grpc.health.v1.Health/Check";
    assert!(methods.contains(&health), "{methods:?}");
    assert!(
        methods
            .iter()
            .all(|m| m.starts_with("checkout.v1.") || *m == "unknown" || *m == health),
        "{methods:?}"
    );
    let unknown: f64 = calls
        .iter()
        .filter(|s| s.labels["method"] == "unknown")
        .map(|s| s.value)
        .sum();
    assert_eq!(unknown, 3.0, "{methods:?}");
    let histogram = &families["checkout_rpc_duration_seconds"];
    assert!(histogram_count("checkout_rpc_duration_seconds", histogram, &series) >= 1.0);
    let only = |name: &str| {
        let samples = &families[name].samples;
        assert_eq!(samples.len(), 1, "{name}");
        assert!(samples[0].labels.is_empty(), "{name}");
        samples[0].value
    };
    // The server runs in this process: its process metrics are this process's.
    let proc_limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft_nofile: f64 = proc_limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("Max open files");
    assert_eq!(only("process_max_fds"), soft_nofile);
    let open = only("process_open_fds");
    assert!(open >= 3.0 && open <= soft_nofile, "{open}");
    assert!(only("process_resident_memory_bytes") > 1024.0 * 1024.0);
    assert!(only("process_virtual_memory_bytes") >= only("process_resident_memory_bytes"));
    assert!(only("process_cpu_seconds_total") > 0.0);
    assert!(only("process_threads") >= 2.0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = only("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
    // Only GET (and HEAD) of /metrics.
    let other = exchange(
        app.metrics_addr,
        b"GET /other HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let post = exchange(
        app.metrics_addr,
        b"POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
}

/// The binary as a child process, so that its memory is its own; killed on drop.
struct ChildService {
    child: Child,
    metrics: SocketAddr,
}

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_child(db: &TestDb) -> ChildService {
    let mut child = Command::new(env!("CARGO_BIN_EXE_checkout"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("CHECKOUT_LISTEN_ADDR", "127.0.0.1:0")
        .env("CHECKOUT_METRICS_ADDR", "127.0.0.1:0")
        .env("CHECKOUT_PLATFORM_TOKEN", format!("pt_{}", "m".repeat(40)))
        .env("CHECKOUT_SECRETS_KEY", &db.secrets_key)
        .env("CHECKOUT_DEMO_SEED", "false")
        .env("CHECKOUT_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the checkout binary");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let metrics = loop {
        let line = lines.next().expect("a log line").expect("stderr");
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        if log["fields"]["message"] == "metrics listening" {
            break log["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    // Keep reading: a closed pipe would fail the service's log writes.
    std::thread::spawn(move || lines.for_each(drop));
    ChildService { child, metrics }
}

/// How one oversized request went.
#[derive(Debug)]
struct Refusal {
    /// The whole request was written (the server read it or buffered it).
    written: bool,
    reply: String,
}

/// Writes `prefix` then `total` bytes of `filler`, reading the reply concurrently.
async fn oversized(addr: SocketAddr, prefix: &[u8], filler: &[u8], total: usize) -> Refusal {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&reply).into_owned()
    });
    let chunk: Vec<u8> = filler.iter().copied().cycle().take(64 * 1024).collect();
    let write = tokio::time::timeout(PATIENCE, async {
        wr.write_all(prefix).await?;
        let mut sent = 0;
        while sent < total {
            wr.write_all(&chunk).await?;
            sent += chunk.len();
        }
        wr.flush().await
    })
    .await
    .expect("the server neither read the request nor closed the connection");
    drop(wr);
    let reply = tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("the server closes the connection")
        .unwrap();
    Refusal {
        written: write.is_ok(),
        reply,
    }
}

pub async fn oversized_request_heads_are_refused_in_bounded_memory(ctx: Ctx) {
    let db = TestDb::create(&ctx).await;
    let service = start_child(&db);
    let pid = service.child.id();
    assert!(scrape(service.metrics).await.contains("process_open_fds"));
    let peak_before = status_file_kib(pid, "VmHWM:");
    // 16 MiB each: more than loopback socket buffers hold, so the whole request is written
    // only if the server reads it.
    const SIZE: usize = 16 * 1024 * 1024;
    let cases: [(&str, &[u8], &[u8]); 3] = [
        ("request line", b"GET /", b"a"),
        ("one header", b"GET /metrics HTTP/1.1\r\nx-pad: ", b"a"),
        ("many headers", b"GET /metrics HTTP/1.1\r\n", b"x-h: y\r\n"),
    ];
    for (what, prefix, filler) in cases {
        let refusal = oversized(service.metrics, prefix, filler, SIZE).await;
        assert!(
            refusal.reply.starts_with("HTTP/1.1 431") || !refusal.written,
            "{what}: {refusal:?}"
        );
        assert!(!refusal.reply.contains(" 200 "), "{what}: {refusal:?}");
    }
    // A body is never read: the answer comes, the connection closes, the rest is not taken in.
    let head = format!("POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: {SIZE}\r\n\r\n");
    let body = oversized(service.metrics, head.as_bytes(), b"a", SIZE).await;
    assert!(
        body.reply.starts_with("HTTP/1.1 405") && !body.written,
        "{body:?}"
    );
    // Still serving, and the process never held the requests.
    assert!(scrape(service.metrics).await.contains("process_open_fds"));
    let growth_kib = status_file_kib(pid, "VmHWM:").saturating_sub(peak_before);
    assert!(
        growth_kib < 8 * 1024,
        "peak RSS grew by {growth_kib} KiB for 4 x 16 MiB refused requests"
    );
}

pub async fn idle_connections_are_closed(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, limits(Duration::from_secs(1), 32)).await;
    // Never sends a byte.
    let started = Instant::now();
    let mut silent = TcpStream::connect(app.metrics_addr).await.unwrap();
    closed_by_server(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Kept alive after a scrape, then idle.
    let mut kept = TcpStream::connect(app.metrics_addr).await.unwrap();
    kept.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8(closed_by_server(&mut kept).await).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("checkout_db_pool_connections"), "{reply}");
}

pub async fn trickled_request_head_is_cut_off(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, limits(Duration::from_secs(2), 32)).await;
    let stream = TcpStream::connect(app.metrics_addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    // One byte every 100 ms, never finishing the head, for as long as the server lets it.
    let trickle = tokio::spawn(async move {
        let mut sent = 0usize;
        let mut bytes = b"GET /metrics HTTP/1.1\r\nx-slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'));
        while started.elapsed() < PATIENCE * 2 {
            if wr.write_all(&[*bytes.next().unwrap()]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });
    let mut reply = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, rd.read_to_end(&mut reply)).await;
    assert!(closed.is_ok(), "a trickled head kept the connection open");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(!String::from_utf8_lossy(&reply).contains(" 200 "));
    trickle.abort();
}

pub async fn connections_past_the_cap_wait(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, limits(Duration::from_secs(60), 2)).await;
    let first = TcpStream::connect(app.metrics_addr).await.unwrap();
    let _second = TcpStream::connect(app.metrics_addr).await.unwrap();
    // The listener accepts in order: these two hold both slots, and a scrape waits.
    let waiting = tokio::spawn(scrape(app.metrics_addr));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "a third connection was served");
    drop(first);
    let reply = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(reply.contains("process_open_fds"));
}

pub async fn stopping_closes_metrics_connections(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, limits(Duration::from_secs(120), 32)).await;
    let addr = app.metrics_addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(scrape(addr).await.starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    app.stop(PATIENCE).await;
    // Closed by the stop, not by its 120 s header timeout.
    closed_by_server(&mut idle).await;
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}
