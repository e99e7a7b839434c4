//! Connection bounds (src/listener.rs): connections that never speak HTTP/2 are closed after
//! the handshake timeout, and the cap on open connections refuses new ones while those
//! already open keep being served. Raw TCP sockets play the silent clients.
use crate::helpers::{Ctx, Options, TestApp};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{io::AsyncReadExt, net::TcpStream};
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// Generous: the machine is loaded; nothing here waits this long when things work.
const PATIENCE: Duration = Duration::from_secs(30);

async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|r| r.into_inner().status)
}

/// A new client on a new connection: its health check, or why it failed.
async fn new_client_health(addr: SocketAddr) -> Result<i32, String> {
    let attempt = async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        health(channel).await.map_err(|s| s.to_string())
    };
    tokio::time::timeout(PATIENCE, attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Waits until the server closes `socket` (EOF or reset), and returns when that was seen.
/// What the server sent before (its SETTINGS frame, when it accepted the connection) is
/// skipped.
async fn closed_by_server(socket: &mut TcpStream) -> Instant {
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("the server closed the connection")
}

pub async fn silent_connections_are_closed_after_the_handshake_timeout(ctx: Ctx) {
    let timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(
        &ctx,
        Options {
            connections: (10_000, timeout.as_millis() as u64),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        health(app.channel.clone()).await.unwrap(),
        ServingStatus::Serving as i32
    );
    // 40 say nothing; 10 send only part of the preface (a slow-loris handshake).
    let mut silent = Vec::new();
    for i in 0..50 {
        // Before connecting: the server's clock for this connection starts later.
        let opened = Instant::now();
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        if i % 5 == 0 {
            use tokio::io::AsyncWriteExt;
            socket.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        }
        silent.push((opened, socket));
    }
    for (opened, socket) in &mut silent {
        let closed = closed_by_server(socket).await;
        assert!(
            closed.duration_since(*opened) >= timeout,
            "closed after {:?}, before the handshake timeout",
            closed.duration_since(*opened)
        );
    }
    // A connection that did the handshake is not subject to it: the one opened at start
    // has been idle for longer than the timeout and still answers.
    tokio::time::sleep(timeout * 2).await;
    assert_eq!(
        health(app.channel.clone()).await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        new_client_health(app.addr).await,
        Ok(ServingStatus::Serving as i32)
    );
}

/// Log lines written on the threads of one runtime (the server's), for asserting on them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A runtime whose threads log into `logs`: a server spawned on it logs there, while the
/// other tests (other runtimes, other threads) do not.
fn logging_runtime(logs: &Logs) -> tokio::runtime::Runtime {
    let logs = logs.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || {
            let logs = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || logs.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::WARN)
                .finish();
            // For the thread's whole life: the guard is never dropped.
            std::mem::forget(tracing::subscriber::set_default(subscriber));
        })
        .build()
        .unwrap()
}

pub async fn connection_cap_keeps_existing_clients_served(ctx: Ctx) {
    const CAP: usize = 20;
    let logs = Logs::default();
    let server_rt = logging_runtime(&logs);
    let opts = Options {
        // A handshake timeout longer than the test: the silent connections leave only when
        // the test closes them.
        connections: (CAP, 600_000),
        ..Default::default()
    };
    let app = server_rt
        .spawn(async move { TestApp::spawn_with(&ctx, opts).await })
        .await
        .unwrap();
    assert_eq!(
        health(app.channel.clone()).await.unwrap(),
        ServingStatus::Serving as i32
    );
    // CAP + 10 silent connections: the cap is reached whatever the accept order.
    let mut silent = Vec::new();
    for _ in 0..CAP + 10 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // A connection that arrives now is behind all of them: closed at once, long before
    // any handshake timeout.
    let mut probe = TcpStream::connect(app.addr).await.unwrap();
    closed_by_server(&mut probe).await;
    // The client connected before the flood is still served.
    assert_eq!(
        health(app.channel.clone()).await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert!(
        new_client_health(app.addr).await.is_err(),
        "a new client was served over the connection cap"
    );
    let deadline = Instant::now() + PATIENCE;
    while !logs.text().contains("connection limit reached") {
        assert!(Instant::now() < deadline, "no log line about the cap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = logs.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains(&format!("max_connections={CAP}")), "{text}");
    // Rate-limited (one line per 10 s): a line or two for the 13 refusals so far, however
    // slowly this machine ran them.
    let lines = text.matches("connection limit reached").count();
    assert!(lines <= 3, "{lines} lines for 13 refusals: {text}");
    // Once the silent ones are gone, new clients are served again.
    drop(silent);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match new_client_health(app.addr).await {
            Ok(status) => {
                assert_eq!(status, ServingStatus::Serving as i32);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "not served again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop(Duration::from_secs(10)).await;
    server_rt.shutdown_background();
}
