//! The outermost layer: one span per RPC (method, store id, session id, gRPC code,
//! duration), parented on the caller's W3C `traceparent`, and the RPC metrics. Expected
//! client errors are not logged as errors; server failures were logged where the status
//! was made (crate::error).
use crate::{metrics::Metrics, telemetry::HeaderExtractor};
use futures_util::future::BoxFuture;
use std::{
    collections::HashSet,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
    time::Instant,
};
use tracing::{field::Empty, Instrument};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The method, for spans and metric labels: one this server serves, else `unknown`, so that
/// arbitrary paths from unauthenticated callers cannot grow the label set. A `&'static str`
/// out of a set built once: labelling a call allocates nothing.
fn method_label(path: &str) -> &'static str {
    static SERVED: LazyLock<HashSet<String>> = LazyLock::new(served_methods);
    path.strip_prefix('/')
        .and_then(|m| SERVED.get(m))
        .map_or("unknown", String::as_str)
}

/// `package.Service/Method` for every method of the services added in startup.rs, from the
/// descriptor sets compiled into the binary.
fn served_methods() -> HashSet<String> {
    use prost::Message;
    let sets = [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut served = HashSet::new();
    for set in sets {
        let set = prost_types::FileDescriptorSet::decode(set).expect("compiled-in descriptors");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    served.insert(format!(
                        "{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    served
}

#[derive(Clone)]
pub struct RpcLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// gRPC over HTTP/2 says `application/grpc`, optionally `+proto` or with parameters. tonic
/// does not check it and would read a JSON body as gRPC frames (its first byte as a
/// compression flag: INTERNAL). Like grpc-go, anything else gets HTTP 415 with
/// INVALID_ARGUMENT, so gRPC clients and plain HTTP clients both see a refusal.
fn is_grpc_content_type(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct == "application/grpc"
                || ct.starts_with("application/grpc+proto")
                || ct.starts_with("application/grpc;")
        })
}

fn unsupported_media_type<R: Default>() -> http::Response<R> {
    let mut res = http::Response::new(R::default());
    *res.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", http::HeaderValue::from_static("3"));
    h.insert(
        "grpc-message",
        http::HeaderValue::from_static("Unsupported content-type: use application/grpc"),
    );
    res
}

/// tonic's own framing errors (a compressed flag without `grpc-encoding`, a flag other
/// than 0 or 1) are INTERNAL as the gRPC compression spec requires, with a fixed message
/// that quotes nothing of the body. They are still the client's doing: logged as such.
fn log_protocol_error<B>(res: &http::Response<B>) {
    let message = res
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if message.starts_with("protocol error") {
        tracing::warn!("client error: gRPC framing violated ({message})");
    }
}

/// The status of a call, where a response carries it in its headers (every error, since
/// tonic sends errors trailers-only); a successful call carries it in trailers: OK.
fn grpc_code<B>(res: &http::Response<B>) -> i32 {
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let method = method_label(req.uri().path());
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            store_id = Empty,
            session_id = Empty,
            duration_ms = Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(req.headers()))
        });
        let _ = span.set_parent(parent);
        let started = Instant::now();
        let grpc = is_grpc_content_type(req.headers());
        Box::pin(
            async move {
                let res = if grpc {
                    inner.call(req).await
                } else {
                    tracing::info!("client error: request without a gRPC content-type");
                    Ok(unsupported_media_type())
                };
                let code = res.as_ref().map(grpc_code).unwrap_or(14);
                if code == 13 {
                    if let Ok(res) = &res {
                        log_protocol_error(res);
                    }
                }
                let took = started.elapsed();
                let current = tracing::Span::current();
                current.record("rpc.grpc.status_code", code);
                current.record("duration_ms", took.as_millis() as u64);
                metrics.rpc(method, code, took);
                tracing::debug!(code = crate::metrics::code_name(code), "rpc finished");
                res
            }
            .instrument(span),
        )
    }
}
