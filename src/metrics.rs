//! Prometheus metrics in the text exposition format, served on their own port
//! (`CHECKOUT_METRICS_ADDR`, off unless set). One registry per Application: no globals, so
//! several servers in one process (tests) keep their own counts.
use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// method → code → calls. Nested, so that counting a call allocates nothing once its
    /// method and code were seen (this runs on every call).
    rpcs: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    sessions_created: Mutex<BTreeMap<String, u64>>,
    transitions: Mutex<BTreeMap<String, u64>>,
    webhook_attempts: Mutex<BTreeMap<String, u64>>,
    watch_streams: AtomicI64,
    watch_reads: AtomicU64,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, label: &str) {
    *map.lock()
        .expect("metrics lock")
        .entry(label.to_owned())
        .or_default() += 1;
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
    pub fn rpc(&self, method: &str, code: i32, took: Duration) {
        fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
            if !map.contains_key(key) {
                map.insert(key.to_owned(), V::default());
            }
            map.get_mut(key).expect("inserted above")
        }
        let mut rpcs = self.rpcs.lock().expect("metrics lock");
        *slot(&mut rpcs, method).entry(code_name(code)).or_default() += 1;
        drop(rpcs);
        let mut latency = self.latency.lock().expect("metrics lock");
        let h = slot(&mut latency, method);
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn session_created(&self, outcome: &str) {
        bump(&self.sessions_created, outcome);
    }

    pub fn session_ended(&self, status: &str) {
        bump(&self.transitions, status);
    }

    pub fn webhook_attempt(&self, result: &str) {
        bump(&self.webhook_attempts, result);
    }

    pub fn watch_opened(&self) {
        self.watch_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watch_closed(&self) {
        self.watch_streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// One read of a watched session by the watch hub (one per change, not per watcher).
    pub fn watch_session_read(&self) {
        self.watch_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watch_session_reads(&self) -> u64 {
        self.watch_reads.load(Ordering::Relaxed)
    }

    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            "checkout_rpc_requests_total",
            "counter",
            "gRPC calls by method and status code.",
        );
        let mut text = String::new();
        for (method, codes) in self.rpcs.lock().expect("metrics lock").iter() {
            for (code, n) in codes {
                let _ = writeln!(
                    text,
                    "checkout_rpc_requests_total{{method=\"{method}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str(&text);
        let _ = writeln!(out, "# HELP checkout_rpc_duration_seconds gRPC call latency by method.\n# TYPE checkout_rpc_duration_seconds histogram");
        for (method, h) in self.latency.lock().expect("metrics lock").iter() {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "checkout_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "checkout_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "checkout_rpc_duration_seconds_sum{{method=\"{method}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "checkout_rpc_duration_seconds_count{{method=\"{method}\"}} {}",
                h.count
            );
        }
        let labelled = [
            (
                "checkout_sessions_created_total",
                "outcome",
                "Sessions created, by outcome.",
                &self.sessions_created,
            ),
            (
                "checkout_session_transitions_total",
                "status",
                "Sessions ended, by terminal status.",
                &self.transitions,
            ),
            (
                "checkout_webhook_attempts_total",
                "result",
                "Webhook delivery attempts, by result.",
                &self.webhook_attempts,
            ),
        ];
        for (name, label, help, map) in labelled {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (value, n) in map.lock().expect("metrics lock").iter() {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP checkout_watch_session_reads_total Reads of watched sessions by the watch hub: one per change (or expiry, resync, listener reconnect) per watched session, whatever the number of watchers.\n# TYPE checkout_watch_session_reads_total counter\ncheckout_watch_session_reads_total {}",
            self.watch_session_reads()
        );
        let gauges = [
            (
                "checkout_watch_streams_open",
                "Open WatchSession streams.",
                Some(self.watch_streams.load(Ordering::Relaxed)),
            ),
            (
                "checkout_webhook_outbox_backlog",
                "Webhook deliveries waiting to be sent.",
                snapshot.outbox_backlog,
            ),
            (
                "checkout_db_pool_connections",
                "Database connections open in this replica's pool.",
                Some(snapshot.pool_connections.into()),
            ),
            (
                "checkout_db_pool_idle_connections",
                "Idle database connections in the pool.",
                Some(snapshot.pool_idle.into()),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            }
        }
        out
    }
}
