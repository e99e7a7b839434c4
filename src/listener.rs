//! The gRPC listener's accept loop: what tonic's `TcpIncoming` did (TCP_NODELAY, keepalive)
//! plus the bounds a hostile or broken client must not get around:
//!
//! - **a cap on open connections** (`CHECKOUT_MAX_CONNECTIONS`): each accepted connection
//!   holds a permit that its IO wrapper releases when hyper drops it. Over the cap a new
//!   connection is accepted and closed at once (the client sees the connection closed before
//!   the HTTP/2 handshake, i.e. UNAVAILABLE, and can retry elsewhere) rather than left in
//!   the kernel's backlog where it would hang until the client's own timeout. Connections
//!   already open are untouched, so health checks on them keep working.
//! - **a handshake deadline** (`CHECKOUT_HANDSHAKE_TIMEOUT_MS`): a connection that has not
//!   sent the HTTP/2 preface and the first frame header (SETTINGS) by then gets a read
//!   error, and hyper closes it. Without it a silent connection held its descriptor forever
//!   (hyper's keepalive pings only start once the handshake is done).
//! - **descriptor exhaustion**: `accept` failing with EMFILE/ENFILE leaves the connection in
//!   the backlog, so retrying at once would spin; the loop logs and backs off instead.
//!
//! With TLS configured (`crate::tls`) the socket is wrapped in [`MaybeTls`], whose first
//! reads and writes perform the TLS handshake, under the same deadline: the preface counted
//! is the decrypted one.
//!
//! After the handshake, a connection that idles is pinged by hyper (keepalive interval and
//! timeout in `startup`): a dead peer is closed, a live idle one (a Watch client between
//! events) is kept and counts against the cap.
use crate::tls::{stream::MaybeTls, TlsState};
use futures_util::Stream;
use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The client's connection preface (24 bytes) and the header of the SETTINGS frame that
/// must follow it (9 bytes): once this much has arrived the peer speaks HTTP/2.
const PREFACE_AND_SETTINGS_HEADER: usize = 24 + 9;

/// How long the accept loop pauses when the process is out of file descriptors.
const FD_EXHAUSTED_BACKOFF: Duration = Duration::from_millis(200);

/// At most one warning per kind in this period, with a count of what was left unsaid.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// File descriptors kept for everything that is not a gRPC connection: the database pool,
/// the metrics listener and its clients, webhook deliveries, SQLite's files, stdio.
const RESERVED_FDS: u64 = 256;

#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (a service that holds one descriptor per
/// client should not be stopped by the 1,024 shells default to) and returns the cap to
/// use: the configured one, lowered to fit under the limit with [`RESERVED_FDS`] to spare.
pub fn fit_to_fd_limit(configured: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the file descriptor limit");
            return configured;
        }
    };
    let room = if limit > 2 * RESERVED_FDS {
        limit - RESERVED_FDS
    } else {
        limit / 2
    };
    let cap = configured.min(usize::try_from(room).unwrap_or(usize::MAX));
    if cap < configured {
        tracing::warn!(
            fd_limit = limit,
            configured,
            max_connections = cap,
            "CHECKOUT_MAX_CONNECTIONS lowered to fit the file descriptor limit"
        );
    } else {
        tracing::info!(fd_limit = limit, max_connections = cap, "connection limits");
    }
    cap
}

/// The accepted connections, for `serve_with_incoming_shutdown`. Never yields an error:
/// failed accepts are handled here (tonic would only skip them, without a log line).
pub fn incoming(
    listener: TcpListener,
    limits: ConnLimits,
    tls: Option<TlsState>,
) -> impl Stream<Item = io::Result<Conn>> + Send {
    let acceptor = Acceptor {
        listener,
        tls,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        limits,
        cap_warning: Throttle::default(),
        fd_warning: Throttle::default(),
    };
    futures_util::stream::unfold(acceptor, |mut a| async move {
        let conn = a.next_conn().await;
        Some((Ok(conn), a))
    })
}

struct Acceptor {
    listener: TcpListener,
    tls: Option<TlsState>,
    permits: Arc<Semaphore>,
    limits: ConnLimits,
    cap_warning: Throttle,
    fd_warning: Throttle,
}

impl Acceptor {
    async fn next_conn(&mut self) -> Conn {
        loop {
            let tcp = match self.listener.accept().await {
                Ok((tcp, _peer)) => tcp,
                Err(e) if is_fd_exhaustion(&e) => {
                    if let Some(suppressed) = self.fd_warning.ready() {
                        tracing::warn!(
                            error = %e,
                            suppressed,
                            open_connections = self.open(),
                            "out of file descriptors: not accepting connections for a moment"
                        );
                    }
                    tokio::time::sleep(FD_EXHAUSTED_BACKOFF).await;
                    continue;
                }
                // ECONNABORTED and the like concern that one connection only.
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                if let Some(suppressed) = self.cap_warning.ready() {
                    tracing::warn!(
                        max_connections = self.limits.max_connections,
                        suppressed,
                        "connection limit reached: closing new connections"
                    );
                }
                drop(tcp);
                continue;
            };
            set_socket_options(&tcp);
            let connect_info = tcp.connect_info();
            let io = match &self.tls {
                // The config current now: a reload applies from the next connection on.
                Some(tls) => MaybeTls::Handshaking(Box::new(tls.acceptor().accept(tcp))),
                None => MaybeTls::Plain(tcp),
            };
            return Conn {
                io,
                connect_info,
                handshake: Some(Handshake {
                    seen: 0,
                    deadline: Box::pin(tokio::time::sleep(self.limits.handshake_timeout)),
                }),
                _permit: permit,
            };
        }
    }

    fn open(&self) -> usize {
        self.limits.max_connections - self.permits.available_permits()
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE (24): this process; ENFILE (23): the whole system.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// TCP_NODELAY on every connection: without it a reply that leaves in two writes (the
/// message, then the trailers) waits for the client's delayed ACK, ~40 ms per call.
/// TCP keepalive lets the kernel notice peers that vanished without a FIN.
fn set_socket_options(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "setting TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "setting TCP keepalive");
    }
}

/// Rate limit for one kind of warning, so that a flood of connections is not also a flood
/// of log lines.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(number of occurrences not logged since the last line)` when a line may go out.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// An accepted connection: the socket, its handshake deadline until the preface has
/// arrived, and its place under the connection cap (released when hyper drops it).
pub struct Conn {
    io: MaybeTls,
    connect_info: TcpConnectInfo,
    handshake: Option<Handshake>,
    _permit: OwnedSemaphorePermit,
}

struct Handshake {
    seen: usize,
    deadline: Pin<Box<Sleep>>,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.connect_info.clone()
    }
}

impl Conn {
    /// An error once the handshake deadline has passed. Polled by reads and, for TLS, by
    /// writes and flushes too: h2 flushes its SETTINGS before it reads the preface, and
    /// with TLS that flush waits on the client's hello.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(h) = &mut self.handshake else {
            return Poll::Pending;
        };
        std::task::ready!(h.deadline.as_mut().poll(cx));
        tracing::debug!("no HTTP/2 preface within the handshake timeout; closing");
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "no HTTP/2 preface within the handshake timeout",
        ))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Until the preface is in, hyper is waiting on this read (or, with TLS, on a flush:
        // see poll_deadline), so polling the deadline here wakes it when the time is up.
        if let Poll::Ready(e) = this.poll_deadline(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(h)) = (&read, &mut this.handshake) {
            h.seen += buf.filled().len() - before;
            if h.seen >= PREFACE_AND_SETTINGS_HEADER {
                this.handshake = None;
            }
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_deadline(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_deadline(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_deadline(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
