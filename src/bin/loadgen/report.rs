//! The load generator's summary: latency percentiles, errors by gRPC code, and the
//! closed/open-loop report line (or JSON object).
use super::{Args, Outcome};
use serde_json::json;
use std::{collections::BTreeMap, time::Duration};
use tonic::{Code, Status};

pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Errors by gRPC code: count and the first message.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) BTreeMap<&'static str, (u64, String)>);

impl Errors {
    pub(crate) fn add(&mut self, status: &Status) {
        let e = self
            .0
            .entry(code_name(status.code()))
            .or_insert_with(|| (0, status.message().chars().take(200).collect()));
        e.0 += 1;
    }
    pub(crate) fn merge(&mut self, other: Errors) {
        for (code, (n, msg)) in other.0 {
            self.0.entry(code).or_insert((0, msg)).0 += n;
        }
    }
    pub(crate) fn total(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }
    pub(crate) fn summary(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(code, (n, msg))| format!("{code}={n} (\"{msg}\")"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub(crate) fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(code, (n, msg))| (code.to_string(), json!({"count": n, "first_message": msg})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Latency percentiles (nearest rank) in milliseconds.
pub(crate) struct Percentiles {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

pub(crate) fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort_unstable();
    let pct = |q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1].as_secs_f64() * 1000.0
    };
    Percentiles {
        n: v.len(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: pct(1.0),
    }
}

pub(crate) fn report(args: &Args, out: Outcome, elapsed: f64, connections: usize) {
    let errors = out.errors.total();
    let lat = percentiles(out.latencies);
    let throughput = if elapsed > 0.0 {
        lat.n as f64 / elapsed
    } else {
        0.0
    };
    let lag = percentiles(out.lags);
    if args.json {
        let v = json!({
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "addr": args.addr,
            "loop": if args.rate.is_some() { "open" } else { "closed" },
            "rate": args.rate,
            "concurrency": if args.rate.is_some() { None } else { Some(args.concurrency) },
            "max_inflight": args.rate.map(|_| args.max_inflight),
            "connections": connections,
            "seconds": elapsed,
            "ok": lat.n,
            "errors": errors,
            "errors_by_code": out.errors.to_json(),
            "scheduled": args.rate.map(|_| out.scheduled),
            "unfinished": out.unfinished,
            "throughput": throughput,
            "p50_ms": lat.p50,
            "p90_ms": lat.p90,
            "p99_ms": lat.p99,
            "max_ms": lat.max,
            "start_lag_p99_ms": args.rate.map(|_| lag.p99),
            "reply_bytes": out.reply_bytes,
        });
        println!("{v}");
    } else {
        let shape = match args.rate {
            Some(r) => format!("rate={r}/s max_inflight={}", args.max_inflight),
            None => format!("concurrency={}", args.concurrency),
        };
        println!(
            "mode={:?} {shape} connections={connections} seconds={elapsed:.1} ok={} errors={errors} throughput={throughput:.0}/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms reply_bytes={}",
            args.mode, lat.n, lat.p50, lat.p90, lat.p99, lat.max, out.reply_bytes,
        );
        if args.rate.is_some() {
            println!(
                "open loop: scheduled={} unfinished={} start lag p99={:.2}ms max={:.2}ms",
                out.scheduled, out.unfinished, lag.p99, lag.max
            );
        }
        if errors > 0 {
            println!("errors by code: {}", out.errors.summary());
        }
        if out.errors.0.contains_key("RESOURCE_EXHAUSTED") {
            // The usual surprise of a first load test: the server's per-key rate limit.
            println!(
                "RESOURCE_EXHAUSTED is usually the per-key rate limit: for a load test, start the server with CHECKOUT_RATE_LIMIT_PER_SECOND=0"
            );
        }
    }
}
