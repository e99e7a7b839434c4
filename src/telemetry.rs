//! Logs and traces. Logs are human-readable lines by default and JSON lines with
//! `CHECKOUT_LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`), on stderr (stdout is
//! kept for what a person asked for: the demo banner, CLI output). With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP/gRPC (sharing the
//! service's tonic), and W3C `traceparent` metadata on incoming calls becomes their parent.
use opentelemetry::{propagation::Extractor, trace::TracerProvider as _};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Flushes exported spans when the service stops.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Flushing blocks on the export; keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Installs the global subscriber. Must run inside the Tokio runtime when exporting (the
/// OTLP exporter is a tonic client). `try_init`: tests start many servers in one process,
/// and the first subscriber wins.
pub fn init(format: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Always: a caller's `traceparent` names the trace in the per-RPC log line even when no
    // spans are exported.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (otel, provider) = match otlp_endpoint.filter(|e| !e.is_empty()) {
        None => (None, None),
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            // The resource builder reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
            // "checkout" only when neither names the service.
            let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
                || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
                    .is_ok_and(|a| a.contains("service.name="));
            let resource = if named {
                Resource::builder().build()
            } else {
                Resource::builder().with_service_name("checkout").build()
            };
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("checkout"));
            (Some(layer), Some(provider))
        }
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if format == "json" {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_ansi(colour_wanted())
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    Ok(Telemetry { provider })
}

/// Colour codes only on a terminal, and never with `NO_COLOR` set (no-color.org): in a file
/// or a log pipeline they are noise.
fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Reads W3C trace context from HTTP/2 request headers (gRPC metadata).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
