//! The outermost layer: one span per RPC (method, store id, session id, gRPC code,
//! duration, OpenTelemetry's RPC attributes and error status), parented on the caller's W3C
//! `traceparent`; one log line per RPC with its `x-request-id`; and the RPC metrics. Expected
//! client errors are not logged as errors; server failures were logged where the status
//! was made (crate::error).
use crate::{metrics::Metrics, telemetry::HeaderExtractor};
use futures_util::future::BoxFuture;
use opentelemetry::trace::TraceId;
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
        let (service, short) = method.rsplit_once('/').unwrap_or(("unknown", "unknown"));
        let request_id = request_id(req.headers());
        let peer = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr());
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %short,
            rpc.grpc.status_code = Empty,
            client.address = peer.map(|p| tracing::field::display(p.ip())),
            request_id = %request_id,
            store_id = Empty,
            session_id = Empty,
            duration_ms = Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(req.headers()))
        });
        // Parent first: reading the span's context fixes its trace.
        let _ = span.set_parent(parent.clone());
        let trace_id = trace_id(&span, &parent);
        let started = Instant::now();
        let grpc = is_grpc_content_type(req.headers());
        Box::pin(
            async move {
                let mut res = if grpc {
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
                if let Ok(res) = &mut res {
                    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
                        res.headers_mut().insert(REQUEST_ID, v);
                    }
                }
                let took = started.elapsed();
                let current = tracing::Span::current();
                current.record("rpc.grpc.status_code", code);
                current.record("duration_ms", took.as_millis() as u64);
                if is_server_fault(code) {
                    current.record("otel.status_code", "ERROR");
                }
                metrics.rpc(method, code, took);
                log_rpc(method, code, took, &trace_id, peer, &request_id);
                res
            }
            .instrument(span),
        )
    }
}

const REQUEST_ID: &str = "x-request-id";

/// The caller's `x-request-id` when it is a sane token (1–128 of `A-Za-z0-9._:-`, so it
/// cannot forge log lines), else a new one; echoed in the response metadata and logged.
fn request_id(headers: &http::HeaderMap) -> String {
    let given = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => crate::domain::ids::random_base62(22),
    }
}

/// The trace this call belongs to: the exported span's, or else the caller's `traceparent`
/// (so logs and the caller's traces meet even when this replica exports nothing).
fn trace_id(span: &tracing::Span, parent: &opentelemetry::Context) -> Shown<TraceId> {
    use opentelemetry::trace::TraceContextExt;
    let own = span.context().span().span_context().trace_id();
    let id = if own != TraceId::INVALID {
        own
    } else {
        parent.span().span_context().trace_id()
    };
    Shown((id != TraceId::INVALID).then_some(id))
}

/// An optional value for a log field, empty when absent; formatted only if the line is
/// written, so a filtered-out log costs no allocation.
struct Shown<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

/// The codes OpenTelemetry's gRPC conventions count as a server span's failure; the
/// others are the client's doing and leave the span status unset.
fn is_server_fault(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// One line per call at INFO (target `checkout::rpc`, so `RUST_LOG=info,checkout::rpc=warn`
/// silences it); health probes only at DEBUG, as balancers call them every second or so.
fn log_rpc(
    method: &str,
    code: i32,
    took: std::time::Duration,
    trace_id: &Shown<TraceId>,
    peer: Option<std::net::SocketAddr>,
    request_id: &str,
) {
    let code = crate::metrics::code_name(code);
    let duration_ms = took.as_secs_f64() * 1000.0;
    let peer = Shown(peer);
    if method.starts_with("grpc.health.") {
        tracing::debug!(target: "checkout::rpc", method, code, duration_ms, %trace_id, %peer, request_id, "rpc");
    } else {
        tracing::info!(target: "checkout::rpc", method, code, duration_ms, %trace_id, %peer, request_id, "rpc");
    }
}
