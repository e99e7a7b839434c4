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
use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
    Request, Status,
};

#[path = "loadgen/feed.rs"]
mod feed;
#[path = "loadgen/load.rs"]
mod load;
#[path = "loadgen/report.rs"]
mod report;
#[path = "loadgen/watch.rs"]
mod watch;

use load::{closed_loop, open_loop, Outcome};
use report::{code_name, percentiles, report, Errors};
use watch::{hold, watch};

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
