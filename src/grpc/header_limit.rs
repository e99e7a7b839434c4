//! The request header limit, answered as a gRPC status.
//!
//! HTTP/2 lets a server refuse a header block above its SETTINGS_MAX_HEADER_LIST_SIZE, and
//! h2 does so itself with a bare HTTP 431 and a stream reset: no `grpc-status`, so gRPC
//! clients see UNKNOWN (tonic: "HTTP status client error (431 …)"). The request never reaches
//! a tower layer there, so no gRPC status can be sent. Hence two limits:
//!
//! - [`MAX_REQUEST_HEADER_BYTES`] (16 KiB), checked here: above it the call is refused with
//!   RESOURCE_EXHAUSTED and a message naming the limit, before authentication.
//! - [`HTTP2_MAX_HEADER_LIST_BYTES`] (64 KiB), given to h2 (and advertised to clients): only
//!   above it does h2's 431 apply (and above four times it h2 closes the connection). It
//!   bounds what one header block may cost in memory.
//!
//! Sizes are counted as HTTP/2 does (RFC 9113 §6.5.2): name + value + 32 per field,
//! pseudo-headers included.
use futures_util::future::Either;
use std::{
    future::{ready, Ready},
    task::{Context, Poll},
};

/// Largest request header block a call may carry (metadata included).
pub const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// The HTTP/2 limit above which h2 refuses with HTTP 431 before the request is seen.
pub const HTTP2_MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// HTTP/2's per-field overhead in header list size accounting.
const FIELD_OVERHEAD: usize = 32;

fn header_list_size<B>(req: &http::Request<B>) -> usize {
    let uri = req.uri();
    let pseudo = [
        (":method", req.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo
        .iter()
        .map(|(name, len)| name.len() + len + FIELD_OVERHEAD)
        .sum();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
        .sum();
    pseudo + fields
}

#[derive(Clone, Copy, Default)]
pub struct HeaderLimitLayer;

impl<S> tower::Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimit { inner }
    }
}

#[derive(Clone)]
pub struct HeaderLimit<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for HeaderLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let size = header_list_size(&req);
        if size <= MAX_REQUEST_HEADER_BYTES {
            return Either::Left(self.inner.call(req));
        }
        tracing::info!(size, "client error: request headers over the limit");
        let status = tonic::Status::resource_exhausted(format!(
            "request headers are {size} bytes; the limit is {MAX_REQUEST_HEADER_BYTES}"
        ));
        Either::Right(ready(Ok(status.into_http())))
    }
}
