//! The IO of one accepted connection: the TCP socket itself, or TLS over it.
//!
//! The TLS handshake is driven by the connection's own first reads and writes rather than
//! awaited in the accept loop, so a slow or silent client never holds up accepting others,
//! and the handshake deadline of `crate::listener` (which wraps this) covers it too.
use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{server::TlsStream, Accept};

pub enum MaybeTls {
    Plain(TcpStream),
    // Boxed: a rustls connection is over 1 KiB, a plain socket a few words.
    Handshaking(Box<Accept<TcpStream>>),
    Tls(Box<TlsStream<TcpStream>>),
    /// The handshake failed (e.g. a plaintext client): every further call fails.
    Failed,
}

impl MaybeTls {
    /// Drives the handshake; `Ready(Ok)` once the stream is usable.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            MaybeTls::Handshaking(accept) => match Pin::new(accept.as_mut()).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(tls)) => {
                    *self = MaybeTls::Tls(Box::new(tls));
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    *self = MaybeTls::Failed;
                    Poll::Ready(Err(e))
                }
            },
            MaybeTls::Failed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "TLS handshake failed",
            ))),
            MaybeTls::Plain(_) | MaybeTls::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Runs `$op` on the ready stream, after the handshake.
macro_rules! ready_io {
    ($this:expr, $cx:ident, |$io:ident| $op:expr) => {{
        let this: &mut MaybeTls = $this;
        if let Err(e) = std::task::ready!(this.poll_ready($cx)) {
            return Poll::Ready(Err(e));
        }
        match this {
            MaybeTls::Plain(tcp) => {
                let $io = Pin::new(tcp);
                $op
            }
            MaybeTls::Tls(tls) => {
                let $io = Pin::new(tls.as_mut());
                $op
            }
            MaybeTls::Handshaking(_) | MaybeTls::Failed => unreachable!("poll_ready finished"),
        }
    }};
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready_io!(self.get_mut(), cx, |io| io.poll_read(cx, buf))
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready_io!(self.get_mut(), cx, |io| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready_io!(self.get_mut(), cx, |io| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(tcp) => tcp.is_write_vectored(),
            MaybeTls::Tls(tls) => tls.is_write_vectored(),
            // Asked once when hyper takes the connection, before any handshake: both
            // answers work, this one is right for TLS.
            MaybeTls::Handshaking(_) | MaybeTls::Failed => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready_io!(self.get_mut(), cx, |io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Nothing to close politely before the handshake is done; dropping closes the socket.
        if matches!(this, MaybeTls::Handshaking(_) | MaybeTls::Failed) {
            return Poll::Ready(Ok(()));
        }
        ready_io!(this, cx, |io| io.poll_shutdown(cx))
    }
}
