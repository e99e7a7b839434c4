//! The metrics listener: `GET /metrics` over HTTP/1.1, served by hyper (already in the tree
//! through tonic) with bounds on everything a client controls. A request head larger than
//! [`ListenerLimits::max_header_bytes`] gets 431 and the connection closes, without the rest
//! being read; a head not received within [`ListenerLimits::header_read_timeout`] (counted
//! from the connection's start, or from the end of the previous response on a kept-alive
//! connection) closes the connection, which covers idle connections and bytes trickled in
//! slowly; no connection lives longer than [`ListenerLimits::connection_timeout`]; at most
//! [`ListenerLimits::max_connections`] are served at once, further ones wait in the kernel's
//! listen backlog; request bodies are never read.
use crate::{
    db::{outbox, Db},
    metrics::{Metrics, Snapshot},
};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
    task::JoinHandle,
};

/// The limits of the metrics listener. Not settings an operator needs: the defaults suit a
/// Prometheus server scraping every few seconds; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Longest wait for a complete request head.
    pub header_read_timeout: Duration,
    /// Longest life of one connection, whatever it does (e.g. never reads its response).
    pub connection_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; hyper's floor is 8 KiB.
    pub max_header_bytes: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
            max_connections: 32,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Headers in one request; a scraper sends a handful.
const MAX_HEADERS: usize = 64;
/// hyper refuses a smaller read buffer (HTTP/1 needs room for a request line).
const MIN_BUF_SIZE: usize = 8 * 1024;

/// The Prometheus text exposition format this endpoint serves.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves until `shutdown` turns true; then stops accepting, lets each open connection finish
/// the response it is writing, and returns once they are closed.
pub fn serve(
    listener: TcpListener,
    db: Db,
    metrics: Arc<Metrics>,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    tokio::spawn(async move {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(MIN_BUF_SIZE))
            .max_headers(MAX_HEADERS);
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let graceful = GracefulShutdown::new();
        // Logged once each time the cap is reached, not once per waiting connection.
        let mut at_cap = false;
        loop {
            // A free slot before accepting: past the cap, connections wait in the kernel's
            // backlog, holding no descriptor of this process.
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    at_cap = false;
                    permit
                }
                Err(_) => {
                    if !std::mem::replace(&mut at_cap, true) {
                        tracing::warn!(
                            max = limits.max_connections,
                            "metrics listener at its connection cap; new connections wait"
                        );
                    }
                    tokio::select! {
                        permit = slots.clone().acquire_owned() => permit.expect("never closed"),
                        _ = stopped(&mut shutdown) => break,
                    }
                }
            };
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, most likely: pause rather than spin.
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            };
            let (db, metrics) = (db.clone(), metrics.clone());
            let service = service_fn(move |req| respond(req, db.clone(), metrics.clone()));
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            let lifetime = limits.connection_timeout;
            tokio::spawn(async move {
                let _slot = permit;
                match tokio::time::timeout(lifetime, conn).await {
                    Ok(Ok(())) => {}
                    // Header timeouts, oversized heads, resets: the client's doing.
                    Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection closed"),
                    Err(_) => tracing::debug!("metrics connection closed at its deadline"),
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    })
}

/// Resolves once `shutdown` is true (or its sender is gone), holding no borrow of it.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn respond(
    req: Request<Incoming>,
    db: Db,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode| {
        let mut res = Response::new(Full::default());
        *res.status_mut() = status;
        res
    };
    if req.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut res = reply(StatusCode::METHOD_NOT_ALLOWED);
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(res);
    }
    let (connections, idle) = db.pool_state();
    let snapshot = Snapshot {
        outbox_backlog: outbox::backlog(&db).await.ok(),
        pool_connections: connections,
        pool_idle: idle,
    };
    let mut res = Response::new(Full::new(Bytes::from(metrics.render(&snapshot))));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    Ok(res)
}
