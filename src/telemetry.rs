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
    let (otel, provider) = match otlp_endpoint.filter(|e| !e.is_empty()) {
        None => (None, None),
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("checkout").build())
                .build();
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
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
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    Ok(Telemetry { provider })
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
