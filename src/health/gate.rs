//! Fail fast while the database is known to be down: checkout calls get UNAVAILABLE at once
//! instead of each holding a stream for the pool's connect timeout (5 s by default) to learn
//! the same thing. Health and reflection pass: they must keep answering. The probe decides
//! (see `probe.rs`); it logs the outage once, so refused calls are not logged one by one.
use super::Health;
use crate::error::AppError;
use futures_util::future::{self, Either};
use std::task::{Context, Poll};

/// Every checkout service (`checkout.v1.*`) needs the database.
const GATED: &str = "/checkout.v1.";

#[derive(Clone)]
pub struct DbGateLayer(pub Health);

impl<S> tower::Layer<S> for DbGateLayer {
    type Service = DbGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DbGate {
            inner,
            health: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct DbGate<S> {
    inner: S,
    health: Health,
}

impl<S, B> tower::Service<http::Request<B>> for DbGate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<future::Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.health.db_down() && req.uri().path().starts_with(GATED) {
            let status = tonic::Status::from(AppError::StorageDown);
            return Either::Left(future::ready(Ok(status.into_http())));
        }
        Either::Right(self.inner.call(req))
    }
}
