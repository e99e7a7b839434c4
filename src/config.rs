//! Configuration. Every setting is a `checkout serve` flag and an environment variable;
//! the binding names are in SPEC section 9.
use crate::db::connect::PoolOptions;
use std::{net::SocketAddr, time::Duration};

/// Database settings. Env vars: `DATABASE_URL` (default `sqlite://checkout.db`),
/// `CHECKOUT_DB_POOL_SIZE` (16), `CHECKOUT_DB_CONNECT_TIMEOUT_MS` (5000).
#[derive(clap::Args, Debug, Clone)]
pub struct DbConfig {
    /// `sqlite://PATH` (embedded) or `postgres://…` (production, shared by replicas).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://checkout.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections per replica.
    #[arg(long, env = "CHECKOUT_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
    /// How long a request waits for a connection before failing with UNAVAILABLE.
    #[arg(long, env = "CHECKOUT_DB_CONNECT_TIMEOUT_MS", default_value_t = 5000)]
    pub db_connect_timeout_ms: u64,
}

impl DbConfig {
    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            max_size: self.db_pool_size.max(1),
            connect_timeout: Duration::from_millis(self.db_connect_timeout_ms),
        }
    }
}

/// Settings of `checkout serve`. Env vars: those of [`DbConfig`], `CHECKOUT_LISTEN_ADDR`,
/// `CHECKOUT_PLATFORM_TOKEN`, `CHECKOUT_HOSTED_URL_TEMPLATE`, `CHECKOUT_DEMO_SEED`,
/// `CHECKOUT_WEBHOOK_ALLOW_PRIVATE_TARGETS`, `CHECKOUT_SHUTDOWN_GRACE_SECONDS`,
/// `CHECKOUT_MAX_DECODING_MESSAGE_BYTES`, `CHECKOUT_MAX_CONCURRENT_STREAMS`,
/// `CHECKOUT_IDEMPOTENCY_RETENTION_HOURS`, `CHECKOUT_EVENT_RETENTION_DAYS`, those of
/// [`crate::dispatch::DispatchConfig`], [`crate::secrets::SecretsConfig`], [`LimitsConfig`],
/// [`ConnConfig`], [`crate::health::HealthConfig`], [`LogConfig`] and [`TlsConfig`].
#[derive(clap::Args, Debug, Clone)]
pub struct ServeConfig {
    #[command(flatten)]
    pub db: DbConfig,
    /// gRPC listen address; `:0` (or port 0) picks a free port, and the bound address is logged.
    #[arg(long, env = "CHECKOUT_LISTEN_ADDR", default_value = "127.0.0.1:50051", value_parser = parse_listen_addr)]
    pub listen_addr: SocketAddr,
    /// Bearer secret for HostedCheckoutService and AdminService (at least 32 characters).
    /// Unset: a random one is generated at start and printed (SQLite development only).
    #[arg(long, env = "CHECKOUT_PLATFORM_TOKEN", hide_env_values = true)]
    pub platform_token: Option<String>,
    /// The hosted payment page; `{CHECKOUT_SESSION_ID}` is replaced by the session id.
    #[arg(
        long,
        env = "CHECKOUT_HOSTED_URL_TEMPLATE",
        default_value = "https://checkout.example.com/s/{CHECKOUT_SESSION_ID}"
    )]
    pub hosted_url_template: String,
    /// Seed a demo store into an empty database. Default: true for SQLite, false for Postgres.
    #[arg(long, env = "CHECKOUT_DEMO_SEED")]
    pub demo_seed: Option<bool>,
    /// Allow loopback/private/link-local webhook targets (local testing only).
    #[arg(long, env = "CHECKOUT_WEBHOOK_ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private_targets: bool,
    /// On SIGTERM/ctrl-c: how long in-flight calls may take to finish.
    #[arg(long, env = "CHECKOUT_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// Largest request message accepted (bytes).
    #[arg(long, env = "CHECKOUT_MAX_DECODING_MESSAGE_BYTES", default_value_t = 256 * 1024)]
    pub max_decoding_message_bytes: usize,
    /// HTTP/2 streams per connection.
    #[arg(long, env = "CHECKOUT_MAX_CONCURRENT_STREAMS", default_value_t = 1024)]
    pub max_concurrent_streams: u32,
    /// Hours an idempotency key is kept before the sweeper purges it. At least 24: the SPEC
    /// (section 6) promises a retried CreateSession replays for a day.
    #[arg(
        long,
        env = "CHECKOUT_IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = 72,
        value_parser = clap::value_parser!(u64).range(24..)
    )]
    pub idempotency_retention_hours: u64,
    /// Origins (comma separated, e.g. https://shop.example.com) whose pages may read
    /// responses from this service, for every store; a store's own return origins are
    /// allowed for its slug calls anyway (gRPC-Web, SPEC §12).
    #[arg(long, env = "CHECKOUT_CORS_ORIGINS", value_delimiter = ',', num_args = 0..)]
    pub cors_origins: Vec<String>,
    /// Days the event feed keeps an event (SPEC §11) before the sweeper purges it; a
    /// cursor older than that gets FAILED_PRECONDITION `Cursor expired`.
    #[arg(
        long,
        env = "CHECKOUT_EVENT_RETENTION_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub event_retention_days: u64,
    #[command(flatten)]
    pub webhooks: crate::dispatch::DispatchConfig,
    #[command(flatten)]
    pub secrets: crate::secrets::SecretsConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub health: crate::health::HealthConfig,
    #[command(flatten)]
    pub conn: ConnConfig,
    #[command(flatten)]
    pub log: LogConfig,
    #[command(flatten)]
    pub tls: TlsConfig,
}

/// TLS on the gRPC listener. Env vars: `CHECKOUT_TLS_CERT`, `CHECKOUT_TLS_KEY` (both or
/// neither; unset: plaintext), `CHECKOUT_TLS_CLIENT_CA` (mTLS), `CHECKOUT_TLS_POLL_SECONDS`
/// (2). See `crate::tls`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM certificate chain of the gRPC listener (leaf first). Reloaded on SIGHUP or change.
    #[arg(long, env = "CHECKOUT_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CHECKOUT_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate issued by one (mTLS).
    #[arg(long, env = "CHECKOUT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// How often the TLS files are checked for changes; 0: reload on SIGHUP only.
    #[arg(long, env = "CHECKOUT_TLS_POLL_SECONDS", default_value_t = 2)]
    pub tls_poll_seconds: u64,
}

/// Connections to the gRPC listener. Env vars: `CHECKOUT_MAX_CONNECTIONS` (10000),
/// `CHECKOUT_HANDSHAKE_TIMEOUT_MS` (5000). See `crate::listener`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnConfig {
    /// Open gRPC connections at most; over it a new connection is closed at once. Lowered at
    /// start to fit under the file descriptor limit.
    #[arg(long, env = "CHECKOUT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// A connection that has not sent the HTTP/2 preface within this time is closed.
    #[arg(long, env = "CHECKOUT_HANDSHAKE_TIMEOUT_MS", default_value_t = 5_000)]
    pub handshake_timeout_ms: u64,
}

/// Logs, traces and metrics. Env vars: `RUST_LOG` (default `info`), `CHECKOUT_LOG_FORMAT`
/// (`text` or `json`), `OTEL_EXPORTER_OTLP_ENDPOINT` (unset: no export),
/// `CHECKOUT_METRICS_ADDR` (unset: no metrics listener).
#[derive(clap::Args, Debug, Clone)]
pub struct LogConfig {
    #[arg(long, env = "CHECKOUT_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// OTLP/gRPC collector for traces, e.g. http://127.0.0.1:4317.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Where to serve Prometheus metrics (GET /metrics), e.g. 127.0.0.1:9464.
    #[arg(long, env = "CHECKOUT_METRICS_ADDR", value_parser = parse_listen_addr)]
    pub metrics_addr: Option<SocketAddr>,
    /// Timeouts and size limits of the metrics listener: fixed defaults, not flags (tests
    /// shorten them).
    #[arg(skip)]
    pub metrics_limits: crate::metrics::http::ListenerLimits,
}

/// Protection. Env vars: `CHECKOUT_RATE_LIMIT_PER_SECOND` (50; 0 turns it off),
/// `CHECKOUT_RATE_LIMIT_BURST` (100), `CHECKOUT_AUTH_FAILURES_PER_MINUTE` (60; 0 turns it
/// off), `CHECKOUT_AUTH_FAILURES_BURST` (20), `CHECKOUT_REQUEST_TIMEOUT_MS` (30000).
#[derive(clap::Args, Debug, Clone)]
pub struct LimitsConfig {
    /// Sustained calls per second per API key (and per store for store-slug callers).
    #[arg(long, env = "CHECKOUT_RATE_LIMIT_PER_SECOND", default_value_t = 50.0)]
    pub rate_limit_per_second: f64,
    /// Calls a key may make at once above the sustained rate.
    #[arg(long, env = "CHECKOUT_RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,
    /// Failed authentications (UNAUTHENTICATED) allowed per peer address per minute, after
    /// the burst; past it they get RESOURCE_EXHAUSTED. Valid keys always pass. 0: no limit.
    #[arg(long, env = "CHECKOUT_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    pub auth_failures_per_minute: u32,
    /// Failed authentications a peer address may make at once.
    #[arg(long, env = "CHECKOUT_AUTH_FAILURES_BURST", default_value_t = 20)]
    pub auth_failures_burst: u32,
    /// Longest a unary call may take (a client's shorter grpc-timeout wins).
    #[arg(long, env = "CHECKOUT_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
}

/// `host:port`, or `:port` on loopback. `:port` keeps the default host rather than every
/// interface: a service that carries bearer secrets is exposed only when asked to be, with
/// an explicit `0.0.0.0:port`.
fn parse_listen_addr(raw: &str) -> Result<SocketAddr, String> {
    let full = match raw.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => raw.to_owned(),
    };
    full.parse()
        .map_err(|_| format!("expected host:port or :port, got {raw:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn idempotency_retention_is_at_least_a_day() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: super::ServeConfig,
        }
        let parse = |hours: &str| {
            Cli::try_parse_from(["checkout", "--idempotency-retention-hours", hours])
                .map(|c| c.serve.idempotency_retention_hours)
        };
        assert_eq!(parse("24").unwrap(), 24);
        assert!(parse("23").is_err());
        let default = Cli::try_parse_from(["checkout"]).unwrap();
        assert_eq!(default.serve.idempotency_retention_hours, 72);
    }

    #[test]
    fn listen_addr_accepts_port_only() {
        assert_eq!(
            super::parse_listen_addr(":0").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert!(super::parse_listen_addr("nonsense").is_err());
    }
}
