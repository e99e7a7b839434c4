//! Logging: human-readable lines by default, JSON lines with `CHECKOUT_LOG_FORMAT=json`,
//! filtered by `RUST_LOG` (default `info`). Logs go to stderr; stdout is kept for what a
//! person asked for (the demo banner, CLI output).
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // try_init: tests start many servers in one process; the first subscriber wins.
    let _ = if format == "json" {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
}
