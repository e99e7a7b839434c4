//! Prometheus metrics, served on their own port (`CHECKOUT_METRICS_ADDR`, off unless set; the
//! listener is in [`http`]). One registry per Application: no globals, so several servers in
//! one process (tests) keep their own counts.
//!
//! The registry, metric types and text exposition are those of `prometheus-client`, the
//! Prometheus project's own Rust client. Counting a call takes a read lock on the family's map
//! and an atomic add; the labels are `&'static str`, so nothing is allocated once a series
//! exists (this runs on every call).
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};
use std::time::Duration;

pub mod http;
mod process;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type LatencyFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    latency: LatencyFamily,
    sessions_created: Family<OutcomeLabels, Counter>,
    transitions: Family<StatusLabels, Counter>,
    webhook_attempts: Family<ResultLabels, Counter>,
    watch_streams: Gauge,
    watch_reads: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let rpcs = Family::default();
        let latency: LatencyFamily = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let sessions_created = Family::default();
        let transitions = Family::default();
        let webhook_attempts = Family::default();
        let watch_streams = Gauge::default();
        let watch_reads = Counter::default();
        let mut registry = Registry::default();
        // The names, types and labels are those of the README's Metrics table (counters get
        // their `_total` from the encoder; help texts their final full stop).
        registry.register(
            "checkout_rpc_requests",
            "gRPC calls by method and status code",
            rpcs.clone(),
        );
        registry.register(
            "checkout_rpc_duration_seconds",
            "gRPC call latency by method",
            latency.clone(),
        );
        registry.register(
            "checkout_sessions_created",
            "Sessions created, by outcome",
            sessions_created.clone(),
        );
        registry.register(
            "checkout_session_transitions",
            "Sessions ended, by terminal status",
            transitions.clone(),
        );
        registry.register(
            "checkout_webhook_attempts",
            "Webhook delivery attempts, by result",
            webhook_attempts.clone(),
        );
        registry.register(
            "checkout_watch_session_reads",
            "Reads of watched sessions by the watch hub: one per change (or expiry, resync, \
             listener reconnect) per watched session, whatever the number of watchers",
            watch_reads.clone(),
        );
        registry.register(
            "checkout_watch_streams_open",
            "Open WatchSession streams",
            watch_streams.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            registry,
            rpcs,
            latency,
            sessions_created,
            transitions,
            webhook_attempts,
            watch_streams,
            watch_reads,
        }
    }
}

/// The gRPC status name, as Prometheus users of gRPC expect it (`OK`, `NOT_FOUND`, …).
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Values read at scrape time from elsewhere (the database, the pool).
pub struct Snapshot {
    pub outbox_backlog: Option<i64>,
    pub pool_connections: u32,
    pub pool_idle: u32,
}

impl Metrics {
    /// One finished call. `method` is a label from a fixed set (grpc::rpc_layer), so the
    /// series stay few whatever paths callers send.
    pub fn rpc(&self, method: &'static str, code: i32, took: Duration) {
        let code = code_name(code);
        self.rpcs.get_or_create(&RpcLabels { method, code }).inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(took.as_secs_f64());
    }

    pub fn session_created(&self, outcome: &'static str) {
        self.sessions_created
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn session_ended(&self, status: &'static str) {
        self.transitions
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    pub fn webhook_attempt(&self, result: &'static str) {
        self.webhook_attempts
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn watch_opened(&self) {
        self.watch_streams.inc();
    }

    pub fn watch_closed(&self) {
        self.watch_streams.dec();
    }

    /// One read of a watched session by the watch hub (one per change, not per watcher).
    pub fn watch_session_read(&self) {
        self.watch_reads.inc();
    }

    pub fn watch_session_reads(&self) -> u64 {
        self.watch_reads.get()
    }

    /// The Prometheus text exposition (format 0.0.4): this registry, the process metrics, and
    /// the values read for this scrape. A gauge whose value could not be read (the backlog,
    /// while the database is down) is left out rather than shown stale.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut scraped = Registry::default();
        if let Some(backlog) = snapshot.outbox_backlog {
            scraped.register(
                "checkout_webhook_outbox_backlog",
                "Webhook deliveries waiting to be sent",
                ConstGauge::new(backlog),
            );
        }
        scraped.register(
            "checkout_db_pool_connections",
            "Database connections open in this replica's pool",
            ConstGauge::new(i64::from(snapshot.pool_connections)),
        );
        scraped.register(
            "checkout_db_pool_idle_connections",
            "Idle database connections in the pool",
            ConstGauge::new(i64::from(snapshot.pool_idle)),
        );
        let mut out = String::new();
        // Writing to a String cannot fail; the encoders return fmt::Result for other writers.
        let encode = prometheus_client::encoding::prometheus_text::encode;
        encode(&mut out, &self.registry).expect("encoding to a String");
        encode(&mut out, &scraped).expect("encoding to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
        time::Duration,
    };

    /// Counts this thread's allocations (other tests' threads do not disturb the count).
    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// The per-call path: once a series exists, counting a call allocates nothing.
    #[test]
    fn counting_a_call_allocates_nothing() {
        let metrics = Metrics::default();
        let method = "checkout.v1.CheckoutService/GetSession";
        metrics.rpc(method, 5, Duration::from_millis(3));
        metrics.session_ended("completed");
        let before = ALLOCATIONS.with(Cell::get);
        for i in 0..1000 {
            metrics.rpc(method, 5, Duration::from_micros(i));
            metrics.session_ended("completed");
            metrics.watch_session_read();
        }
        assert_eq!(ALLOCATIONS.with(Cell::get), before);
        let text = metrics.render(&super::Snapshot {
            outbox_backlog: None,
            pool_connections: 1,
            pool_idle: 1,
        });
        assert!(text.contains(&format!(
            "checkout_rpc_requests_total{{method=\"{method}\",code=\"NOT_FOUND\"}} 1001"
        )));
    }
}
