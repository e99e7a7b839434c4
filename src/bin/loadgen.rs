//! checkout-loadgen: a bounded load generator for a running checkout service (or for
//! `checkout-ceiling`, which accepts any key). Point it only at a service you run (default:
//! this machine). Every mode is bounded in count and in time.
//!
//! Modes:
//! - `create` / `get`, closed loop: `--concurrency` callers each send the next call when
//!   the previous one answered, for `--seconds` (after `--warmup-ms`, not counted), or for
//!   `--requests` calls in all.
//! - `create` / `get` with `--rate N`, open loop: N calls per second are started on a fixed
//!   schedule whatever the answers do; latency counts from the scheduled start, so a slow
//!   server cannot hide its queueing (no coordinated omission).
//! - `watch`: opens `--watchers` WatchSession streams on one freshly created session over
//!   `--connections` connections, waits (`--hold-file` / `--hold-seconds`), ends the session
//!   with ExpireSession and reports how long each watcher waited for the ending.
//! - `feed`: opens `--consumers` WatchEvents streams on the key's store, creates `--events`
//!   sessions `--gap-ms` apart and reports how long each event took to reach each consumer,
//!   and whether every consumer saw every event exactly once, in order (`loadgen/feed.rs`).
//!
//! Output: one summary line, or one JSON object with `--json`. Errors are counted per gRPC
//! code, with the first message seen for each code.
use checkout::pb::{self, checkout_service_client::CheckoutServiceClient};
use clap::{Parser, ValueEnum};
use prost::Message;
use serde_json::json;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::{mpsc, Semaphore};
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
    Code, Request, Status,
};

#[path = "loadgen/feed.rs"]
mod feed;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// CreateSession with one catalog line.
    Create,
    /// GetSession of one session (created first, or --session-id).
    Get,
    /// N WatchSession streams on one new session, then ExpireSession: fan-out latency.
    Watch,
    /// N WatchEvents streams, then K CreateSession calls: feed fan-out latency.
    Feed,
}

#[derive(Parser, Debug)]
#[command(about = "Bounded load generator for a running checkout service")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// A test-environment secret key (sk_test_…), e.g. the demo key the server printed.
    /// checkout-ceiling accepts any value.
    #[arg(long, env = "CHECKOUT_LOADGEN_API_KEY")]
    api_key: String,
    /// A product sold in test, with a USD price (PROD_…). Needed unless --session-id is
    /// given in get mode.
    #[arg(long)]
    product: Option<String>,
    #[arg(long, value_enum, default_value = "create")]
    mode: Mode,
    /// Closed loop: concurrent callers. Open loop (--rate): not used (see --max-inflight).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the calls are spread over (default: min(concurrency, 8); watch: 20).
    #[arg(long)]
    connections: Option<usize>,
    /// Measured time in seconds (at most 300).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Calls before the measured time starts, not counted (milliseconds, at most 10000).
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Open loop: start this many calls per second on a fixed schedule (at most 200000).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: calls in flight at most; a call waiting for a slot still counts its
    /// latency from its scheduled start.
    #[arg(long, default_value_t = 1024)]
    max_inflight: usize,
    /// Closed loop: stop after this many calls in all (each caller stops when they are
    /// started), or when --seconds is over, whichever is first.
    #[arg(long)]
    requests: Option<u64>,
    /// Closed loop: pause after each call (milliseconds).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Print one line per measured call: `call <n> <start_unix_us> <end_unix_us> <code>`.
    #[arg(long)]
    trace_calls: bool,
    /// Send a unique `idempotency-key` with every CreateSession.
    #[arg(long)]
    idempotency: bool,
    /// get: read this session instead of creating one.
    #[arg(long)]
    session_id: Option<String>,
    /// Write the first CreateSession reply (create.bin) and GetSession reply (get.bin),
    /// protobuf-encoded, into this directory (for `checkout-ceiling --replies`); and the
    /// WatchSession events and ExpireSession reply of a second session, ended for it.
    #[arg(long)]
    dump_replies: Option<PathBuf>,
    /// Deadline of each unary call (milliseconds); a call past it counts as DEADLINE_EXCEEDED.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// watch: streams to open (at most 100000).
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// watch, feed: streams being opened at once.
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
    /// feed: WatchEvents streams to open (at most 100000).
    #[arg(long, default_value_t = 1000)]
    consumers: usize,
    /// feed: sessions created (one at a time) once every stream is live.
    #[arg(long, default_value_t = 20)]
    events: usize,
    /// feed: time from one CreateSession's send to the next one's (milliseconds).
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// watch, feed: once every stream is open (feed: live), wait until this file exists before
    /// ending the session (feed: creating the measured sessions), at most --hold-seconds.
    /// Lets a script measure the idle server meanwhile.
    #[arg(long)]
    hold_file: Option<PathBuf>,
    /// watch, feed: the longest wait for --hold-file, or the wait itself without it.
    #[arg(long, default_value_t = 0.0)]
    hold_seconds: f64,
    /// Print one JSON object instead of the summary line.
    #[arg(long)]
    json: bool,
}

const MAX_SECONDS: f64 = 300.0;
/// How long calls still in flight after the measured time may take to finish.
const DRAIN: Duration = Duration::from_secs(15);
/// watch: the longest wait for ExpireSession, and then for the watchers' events.
const EVENT_WAIT: Duration = Duration::from_secs(60);

fn code_name(code: Code) -> &'static str {
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
struct Errors(BTreeMap<&'static str, (u64, String)>);

impl Errors {
    fn add(&mut self, status: &Status) {
        let e = self
            .0
            .entry(code_name(status.code()))
            .or_insert_with(|| (0, status.message().chars().take(200).collect()));
        e.0 += 1;
    }
    fn merge(&mut self, other: Errors) {
        for (code, (n, msg)) in other.0 {
            self.0.entry(code).or_insert((0, msg)).0 += n;
        }
    }
    fn total(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }
    fn summary(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(code, (n, msg))| format!("{code}={n} (\"{msg}\")"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(code, (n, msg))| (code.to_string(), json!({"count": n, "first_message": msg})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Latency percentiles (nearest rank) in milliseconds.
struct Percentiles {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn percentiles(mut v: Vec<Duration>) -> Percentiles {
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

fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

#[derive(Clone)]
struct Caller {
    key: String,
    product: String,
    session_id: String,
    mode: Mode,
    idempotency: bool,
    timeout: Duration,
    /// Distinguishes this run's idempotency keys from another run's.
    run: String,
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

impl Caller {
    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        let auth: MetadataValue<_> = format!("Bearer {}", self.key).parse().expect("ascii key");
        req.metadata_mut().insert("authorization", auth);
        req.metadata_mut()
            .insert("x-context-environment", MetadataValue::from_static("test"));
        req.set_timeout(self.timeout);
        req
    }

    fn order(&self) -> Request<pb::CreateSessionRequest> {
        let mut req = self.request(pb::CreateSessionRequest {
            lines: vec![pb::LineItem {
                product_id: self.product.clone(),
                quantity: 1,
                ..Default::default()
            }],
            currency: "USD".into(),
            ..Default::default()
        });
        if self.idempotency {
            let n = CALLS.fetch_add(1, Ordering::Relaxed);
            let key = format!("loadgen-{}-{n}", self.run);
            req.metadata_mut()
                .insert("idempotency-key", key.parse().expect("ascii key"));
        }
        req
    }

    /// One call; the encoded size of the reply on success.
    async fn call(&self, client: &mut CheckoutServiceClient<Channel>) -> Result<usize, Status> {
        match self.mode {
            Mode::Create => Ok(client
                .create_session(self.order())
                .await?
                .get_ref()
                .encoded_len()),
            Mode::Get | Mode::Watch | Mode::Feed => {
                let get = pb::GetSessionRequest {
                    session_id: self.session_id.clone(),
                };
                Ok(client
                    .get_session(self.request(get))
                    .await?
                    .get_ref()
                    .encoded_len())
            }
        }
    }
}

async fn connect(addr: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let endpoint = Endpoint::from_shared(addr.to_owned())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        channels.push(endpoint.connect().await?);
    }
    Ok(channels)
}

/// The first CreateSession (the session get and watch use), and the replies to dump.
async fn prepare(
    args: &Args,
    caller: &mut Caller,
    channel: Channel,
    need_session: bool,
) -> anyhow::Result<()> {
    let mut client = CheckoutServiceClient::new(channel);
    if let Some(id) = &args.session_id {
        caller.session_id = id.clone();
    } else if need_session || args.dump_replies.is_some() {
        let created = client.create_session(caller.order()).await?.into_inner();
        caller.session_id = created
            .session
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default();
        if let Some(dir) = &args.dump_replies {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("create.bin"), created.encode_to_vec())?;
        }
    }
    if let Some(dir) = &args.dump_replies {
        let get = pb::GetSessionRequest {
            session_id: caller.session_id.clone(),
        };
        let session = client.get_session(caller.request(get)).await?.into_inner();
        std::fs::write(dir.join("get.bin"), session.encode_to_vec())?;
        dump_watch(caller, &mut client, dir).await?;
    }
    Ok(())
}

/// The WatchSession messages for the ceiling, captured on a session of their own (it is
/// ended here): the first event (`watch-open.bin`), the ExpireSession reply (`expire.bin`)
/// and the terminal event (`watch-end.bin`).
async fn dump_watch(
    caller: &Caller,
    client: &mut CheckoutServiceClient<Channel>,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let created = client.create_session(caller.order()).await?.into_inner();
    let session_id = created.session.map(|s| s.id).unwrap_or_default();
    let mut req = caller.request(pb::WatchSessionRequest {
        session_id: session_id.clone(),
    });
    req.metadata_mut().remove("grpc-timeout");
    let mut stream = client.watch_session(req).await?.into_inner();
    let next = |m: Option<pb::SessionEvent>| m.ok_or_else(|| anyhow::anyhow!("watch ended early"));
    let open = next(stream.message().await?)?;
    let expire = pb::ExpireSessionRequest { session_id };
    let expired = client
        .expire_session(caller.request(expire))
        .await?
        .into_inner();
    let end = tokio::time::timeout(caller.timeout, stream.message()).await??;
    let end = next(end)?;
    std::fs::write(dir.join("watch-open.bin"), open.encode_to_vec())?;
    std::fs::write(dir.join("expire.bin"), expired.encode_to_vec())?;
    std::fs::write(dir.join("watch-end.bin"), end.encode_to_vec())?;
    Ok(())
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: Errors,
    reply_bytes: usize,
    /// Open loop: how late calls started against their schedule.
    lags: Vec<Duration>,
    /// Open loop: calls still unanswered when the drain time ran out.
    unfinished: u64,
    /// Open loop: calls scheduled in the measured time.
    scheduled: u64,
}

async fn closed_loop(
    args: &Args,
    caller: &Caller,
    channels: &[Channel],
) -> anyhow::Result<(Outcome, f64)> {
    let warmup = Duration::from_millis(args.warmup_ms.min(10_000));
    let start = Instant::now();
    let measured_from = start + warmup;
    let deadline = measured_from + Duration::from_secs_f64(args.seconds.clamp(0.0, MAX_SECONDS));
    let budget = Arc::new(AtomicUsize::new(
        args.requests.map_or(usize::MAX, |r| r as usize),
    ));
    let pause = Duration::from_millis(args.pause_ms);
    let trace = args.trace_calls;
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|i| {
            let mut client = CheckoutServiceClient::new(channels[i % channels.len()].clone());
            let caller = caller.clone();
            let budget = budget.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut reply_bytes) =
                    (Vec::new(), Errors::default(), 0);
                let mut last_end = measured_from;
                loop {
                    let t = Instant::now();
                    if t >= deadline {
                        break;
                    }
                    let counted = t >= measured_from;
                    if counted
                        && budget
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                b.checked_sub(1)
                            })
                            .is_err()
                    {
                        break;
                    }
                    let wall = unix_us();
                    let result = caller.call(&mut client).await;
                    let end = Instant::now();
                    if counted {
                        last_end = end;
                        if trace {
                            let code = result
                                .as_ref()
                                .map_or_else(|s| code_name(s.code()), |_| "OK");
                            let n = CALLS.fetch_add(1, Ordering::Relaxed);
                            println!("call {n} {wall} {} {code}", unix_us());
                        }
                        match result {
                            Ok(bytes) => {
                                reply_bytes = bytes;
                                latencies.push(end - t);
                            }
                            Err(s) => errors.add(&s),
                        }
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                (latencies, errors, reply_bytes, last_end)
            })
        })
        .collect();
    let mut out = Outcome {
        latencies: Vec::new(),
        errors: Errors::default(),
        reply_bytes: 0,
        lags: Vec::new(),
        unfinished: 0,
        scheduled: 0,
    };
    let mut last = measured_from;
    for w in workers {
        let (l, e, bytes, end) = w.await?;
        out.latencies.extend(l);
        out.errors.merge(e);
        out.reply_bytes = out.reply_bytes.max(bytes);
        last = last.max(end);
    }
    let elapsed = last.saturating_duration_since(measured_from).as_secs_f64();
    Ok((out, elapsed))
}

type Sample = (Duration, Duration, Result<usize, Status>);

async fn open_loop(
    args: &Args,
    caller: &Caller,
    channels: &[Channel],
    rate: f64,
) -> anyhow::Result<(Outcome, f64)> {
    let rate = rate.clamp(0.1, 200_000.0);
    let warmup = Duration::from_millis(args.warmup_ms.min(10_000));
    let seconds = args.seconds.clamp(0.0, MAX_SECONDS);
    let warmup_calls = (warmup.as_secs_f64() * rate).round() as u64;
    let measured_calls = (seconds * rate).round() as u64;
    let total = warmup_calls + measured_calls;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(Semaphore::new(args.max_inflight.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(20);
    let (channels, caller) = (channels.to_vec(), caller.clone());
    // The schedule runs on its own thread: an OS sleep is precise to tens of microseconds,
    // where a tokio timer rounds up to the next millisecond.
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let at = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            let mut client =
                CheckoutServiceClient::new(channels[i as usize % channels.len()].clone());
            let (caller, slots, tx) = (caller.clone(), slots.clone(), tx.clone());
            let counted = i >= warmup_calls;
            handle.spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let lag = at.elapsed();
                let result = caller.call(&mut client).await;
                if counted {
                    let _ = tx.send((lag, at.elapsed(), result));
                }
            });
        }
    });
    let measured_from = start + interval.mul_f64(warmup_calls as f64);
    let schedule_end = start + interval.mul_f64(total as f64);
    let drain_until = schedule_end + DRAIN;
    let mut out = Outcome {
        latencies: Vec::new(),
        errors: Errors::default(),
        reply_bytes: 0,
        lags: Vec::new(),
        unfinished: 0,
        scheduled: measured_calls,
    };
    let mut received = 0u64;
    while received < measured_calls {
        match tokio::time::timeout_at(drain_until.into(), rx.recv()).await {
            Ok(Some((lag, latency, result))) => {
                received += 1;
                out.lags.push(lag);
                match result {
                    Ok(bytes) => {
                        out.reply_bytes = bytes;
                        out.latencies.push(latency);
                    }
                    Err(s) => out.errors.add(&s),
                }
            }
            _ => break,
        }
    }
    out.unfinished = measured_calls - received;
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    let elapsed = schedule_end
        .saturating_duration_since(measured_from)
        .as_secs_f64();
    Ok((out, elapsed))
}

fn report(args: &Args, out: Outcome, elapsed: f64, connections: usize) {
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

/// What one watcher saw.
enum Watched {
    /// The stream could not be opened (or its first event never came).
    OpenFailed(Status),
    /// The terminal event arrived at this instant.
    Ended(Instant),
    /// The stream ended or failed before the terminal event.
    Lost(Option<Status>),
}

fn is_terminal(ev: &pb::SessionEvent) -> bool {
    let status = ev.session.as_ref().map_or(0, |s| s.status);
    [
        pb::SessionStatus::Completed,
        pb::SessionStatus::Cancelled,
        pb::SessionStatus::Expired,
    ]
    .iter()
    .any(|s| *s as i32 == status)
}

/// Once every stream is open: waits until --hold-file exists (at most --hold-seconds), or
/// --hold-seconds without it, so the caller can measure the server with the streams idle.
async fn hold(args: &Args) {
    let hold = Duration::from_secs_f64(args.hold_seconds.clamp(0.0, MAX_SECONDS));
    match &args.hold_file {
        Some(path) => {
            let until = Instant::now() + hold;
            while !path.exists() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        None => tokio::time::sleep(hold).await,
    }
}

async fn watch(args: &Args, caller: &Caller, channels: &[Channel]) -> anyhow::Result<()> {
    let n = args.watchers.clamp(1, 100_000);
    let opening = Arc::new(Semaphore::new(args.open_concurrency.max(1)));
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = CheckoutServiceClient::new(channels[i % channels.len()].clone());
        let (caller, opening, opened, failed) = (
            caller.clone(),
            opening.clone(),
            opened.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let slot = opening.acquire_owned().await;
            let mut req = caller.request(pb::WatchSessionRequest {
                session_id: caller.session_id.clone(),
            });
            // A stream has no deadline; opening it does (enforced below).
            req.metadata_mut().remove("grpc-timeout");
            let first = async {
                let mut stream = client.watch_session(req).await?.into_inner();
                match stream.message().await? {
                    Some(_) => Ok(stream),
                    None => Err(Status::unknown("stream ended before its first event")),
                }
            };
            let mut stream = match tokio::time::timeout(caller.timeout, first).await {
                Ok(Ok(s)) => s,
                Ok(Err(s)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Watched::OpenFailed(s);
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Watched::OpenFailed(Status::deadline_exceeded("opening the stream"));
                }
            };
            drop(slot);
            opened.fetch_add(1, Ordering::Relaxed);
            loop {
                match stream.message().await {
                    Ok(Some(ev)) if is_terminal(&ev) => return Watched::Ended(Instant::now()),
                    Ok(Some(_)) => continue,
                    Ok(None) => return Watched::Lost(None),
                    Err(s) => return Watched::Lost(Some(s)),
                }
            }
        }));
    }
    // Every stream open (or failed), within a bound.
    let open_deadline = started + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let open_seconds = started.elapsed().as_secs_f64();
    let open_now = opened.load(Ordering::Relaxed);
    eprintln!("watch: {open_now} of {n} streams open in {open_seconds:.2}s");
    hold(args).await;
    let mut client = CheckoutServiceClient::new(channels[0].clone());
    // A loaded server may take long to end the session; give it (and the events) time, so
    // the numbers say how long it took rather than that a client gave up.
    let mut expire = caller.request(pb::ExpireSessionRequest {
        session_id: caller.session_id.clone(),
    });
    expire.set_timeout(EVENT_WAIT);
    let sent = Instant::now();
    let expired = client.expire_session(expire).await;
    let replied = Instant::now();
    let event_deadline = replied + EVENT_WAIT;
    let (mut from_send, mut from_reply) = (Vec::new(), Vec::new());
    let (mut open_errors, mut lost_errors) = (Errors::default(), Errors::default());
    let (mut ended, mut before_reply, mut lost, mut timed_out) = (0usize, 0usize, 0usize, 0usize);
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(event_deadline.into(), task).await {
            Ok(Ok(Watched::Ended(at))) => {
                ended += 1;
                if at < replied {
                    before_reply += 1;
                }
                from_send.push(at.saturating_duration_since(sent));
                from_reply.push(at.saturating_duration_since(replied));
            }
            Ok(Ok(Watched::OpenFailed(s))) => open_errors.add(&s),
            Ok(Ok(Watched::Lost(s))) => {
                lost += 1;
                if let Some(s) = s {
                    lost_errors.add(&s);
                }
            }
            Ok(Err(_)) => lost += 1,
            Err(_) => {
                timed_out += 1;
                abort.abort();
            }
        }
    }
    let fs = percentiles(from_send);
    let fr = percentiles(from_reply);
    let expire_ms = (replied - sent).as_secs_f64() * 1000.0;
    let expire_code = expired
        .as_ref()
        .map_or_else(|s| code_name(s.code()), |_| "OK");
    if args.json {
        let v = json!({
            "mode": "watch",
            "addr": args.addr,
            "watchers": n,
            "connections": channels.len(),
            "opened": open_now,
            "open_seconds": open_seconds,
            "open_errors_by_code": open_errors.to_json(),
            "expire_code": expire_code,
            "expire_ms": expire_ms,
            "saw_end": ended,
            "saw_end_before_reply": before_reply,
            "lost": lost,
            "lost_errors_by_code": lost_errors.to_json(),
            "event_wait_seconds": EVENT_WAIT.as_secs(),
            "no_event_in_time": timed_out,
            "fanout_from_send_p50_ms": fs.p50,
            "fanout_from_send_p99_ms": fs.p99,
            "fanout_from_send_max_ms": fs.max,
            "fanout_from_reply_p50_ms": fr.p50,
            "fanout_from_reply_p99_ms": fr.p99,
            "fanout_from_reply_max_ms": fr.max,
        });
        println!("{v}");
    } else {
        println!(
            "watch: {n} streams over {} connections, open {open_now} in {open_seconds:.2}s; ExpireSession {expire_code} in {expire_ms:.1}ms; ending seen by {ended} (before the reply: {before_reply}), lost {lost}, no event within {}s {timed_out}",
            channels.len(),
            EVENT_WAIT.as_secs()
        );
        println!(
            "fan-out from ExpireSession sent: p50={:.1}ms p99={:.1}ms max={:.1}ms; from its reply: p50={:.1}ms p99={:.1}ms max={:.1}ms",
            fs.p50, fs.p99, fs.max, fr.p50, fr.p99, fr.max
        );
        if open_errors.total() > 0 {
            println!("open errors by code: {}", open_errors.summary());
        }
        if lost_errors.total() > 0 {
            println!("lost streams by code: {}", lost_errors.summary());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let needs_product = args.mode != Mode::Get || args.session_id.is_none();
    if needs_product && args.product.is_none() {
        anyhow::bail!("--product is needed (unless --mode get with --session-id)");
    }
    let connections = args.connections.unwrap_or(match args.mode {
        Mode::Watch | Mode::Feed => 20,
        _ => args.concurrency.clamp(1, 8),
    });
    let channels = connect(&args.addr, connections.clamp(1, 1000)).await?;
    let mut caller = Caller {
        key: args.api_key.clone(),
        product: args.product.clone().unwrap_or_default(),
        session_id: String::new(),
        mode: args.mode,
        idempotency: args.idempotency,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        run: format!("{}-{}", std::process::id(), unix_us()),
    };
    prepare(
        &args,
        &mut caller,
        channels[0].clone(),
        matches!(args.mode, Mode::Get | Mode::Watch),
    )
    .await?;
    match (args.mode, args.rate) {
        (Mode::Watch, _) => watch(&args, &caller, &channels).await?,
        (Mode::Feed, _) => feed::run(&args, &caller, &channels).await?,
        (_, Some(rate)) => {
            let (out, elapsed) = open_loop(&args, &caller, &channels, rate).await?;
            report(&args, out, elapsed, channels.len());
        }
        (_, None) => {
            let (out, elapsed) = closed_loop(&args, &caller, &channels).await?;
            report(&args, out, elapsed, channels.len());
        }
    }
    Ok(())
}
