//! checkout-ceiling: a bare tonic server for `checkout.v1.CheckoutService` that answers
//! GetSession and CreateSession with canned messages and does nothing else (no auth, no
//! database, no layers). It is the ceiling the benchmark (`bench/run.sh`) divides the
//! service's numbers by: the same gRPC stack, transport settings and message sizes, with
//! zero work per call. Every credential is accepted; the other methods are UNIMPLEMENTED,
//! except what the two fan-outs need:
//! - WatchSession sends the canned first event (an OPEN session) and holds the stream;
//! - ExpireSession answers the canned EXPIRED session and sends the canned terminal event
//!   to every stream open at that moment, which then ends (whatever session id was asked
//!   for: the benchmark watches one session);
//! - WatchEvents holds the stream and sends it a SESSION_CREATED event for every
//!   CreateSession answered after it opened, in order: the canned session, with the id the
//!   CreateSession answer gave it (each answer names a new session, as the feed benchmark
//!   checks), built once per CreateSession and cloned per stream, as the service does.
//!
//! The canned replies are built in (a realistic one-line session, every field filled as the
//! service fills it for `checkout-loadgen`'s request), or read from replies captured from
//! the real service (`checkout-loadgen --dump-replies DIR` writes `get.bin`, `create.bin`,
//! `watch-open.bin`, `expire.bin` and `watch-end.bin`; pass `--replies DIR`), so the
//! message is byte for byte the real one.
use checkout::pb::{
    self,
    checkout_service_server::{CheckoutService, CheckoutServiceServer},
};
use clap::Parser;
use prost::Message;
use std::{net::SocketAddr, path::PathBuf, pin::Pin, sync::Arc, time::Duration};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{
    transport::{server::TcpIncoming, Server},
    Request, Response, Status,
};

#[derive(Parser, Debug)]
#[command(about = "Bare tonic CheckoutService answering canned messages (a benchmark ceiling)")]
struct Args {
    /// Where to listen; port 0 picks a free port. Loopback only by default.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A directory with `get.bin` (an encoded Session) and `create.bin` (an encoded
    /// CreateSessionResponse) captured from the service by `checkout-loadgen --dump-replies`.
    #[arg(long)]
    replies: Option<PathBuf>,
    /// Same as the service's CHECKOUT_MAX_CONCURRENT_STREAMS default.
    #[arg(long, default_value_t = 1024)]
    max_concurrent_streams: u32,
    /// Same as the service's CHECKOUT_MAX_DECODING_MESSAGE_BYTES default.
    #[arg(long, default_value_t = 262_144)]
    max_decoding_message_bytes: usize,
}

const SESSION_ID: &str = "cs_4pQ7ZbT2mWk9XcR1vN8yLd";

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

/// What the service returns for `checkout-loadgen`'s request (one catalog line of the demo
/// store's Starter Pack, USD, no coupon, no URLs, no metadata), as of its first start.
fn canned_session() -> pb::Session {
    pb::Session {
        id: SESSION_ID.into(),
        store_id: "st_Xk2Jq8Vd0PbL7rTz3NcW5h".into(),
        environment: pb::Environment::Test as i32,
        status: pb::SessionStatus::Open as i32,
        currency: "USD".into(),
        lines: vec![pb::SessionLine {
            product_id: "PROD_8ZkQx2LmPq7Rt".into(),
            product_version_id: "pv_Hq3Zt9WmK1xNb7YcR4sLp2".into(),
            product_name: "Starter Pack".into(),
            unit_amount: 1999,
            quantity: 1,
            amount_total: 1999,
            billing_period: pb::BillingPeriod::OneTime as i32,
            ..Default::default()
        }],
        amount_subtotal: 1999,
        amount_discount: 0,
        amount_total: 1999,
        checkout_url: format!("https://checkout.example.com/s/{SESSION_ID}"),
        store_name: "Demo Store".into(),
        created_at: ts(1_795_420_800, 123_456_000),
        expires_at: ts(1_795_423_500, 123_456_000),
        ..Default::default()
    }
}

fn canned_create(session: &pb::Session) -> pb::CreateSessionResponse {
    pb::CreateSessionResponse {
        checkout_url: session.checkout_url.clone(),
        session: Some(session.clone()),
        outcome: pb::Outcome::PaymentRequired as i32,
        client_token: "ct_N4x8Qm2Wz7Kp1Lr9Tb3Vc6Hy5Jd0Fs2Ga8Eu4Xo1Ri".into(),
    }
}

fn read_reply<M: Message + Default>(dir: &std::path::Path, name: &str) -> anyhow::Result<M> {
    let path = dir.join(name);
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    M::decode(bytes.as_slice()).map_err(|e| anyhow::anyhow!("decoding {}: {e}", path.display()))
}

/// The messages the ceiling answers with.
struct Canned {
    session: pb::Session,
    create: pb::CreateSessionResponse,
    watch_open: pb::SessionEvent,
    expired: pb::Session,
    watch_end: pb::SessionEvent,
}

impl Canned {
    fn built_in() -> Canned {
        let session = canned_session();
        let create = canned_create(&session);
        let expired = expire(&session);
        Canned {
            watch_open: canned_event(&session, pb::SessionStatus::Unspecified),
            watch_end: canned_event(&expired, pb::SessionStatus::Open),
            session,
            create,
            expired,
        }
    }

    fn read(dir: &std::path::Path) -> anyhow::Result<Canned> {
        Ok(Canned {
            session: read_reply(dir, "get.bin")?,
            create: read_reply(dir, "create.bin")?,
            watch_open: read_reply(dir, "watch-open.bin")?,
            expired: read_reply(dir, "expire.bin")?,
            watch_end: read_reply(dir, "watch-end.bin")?,
        })
    }
}

/// The session as ExpireSession leaves it.
fn expire(session: &pb::Session) -> pb::Session {
    pb::Session {
        status: pb::SessionStatus::Expired as i32,
        ..session.clone()
    }
}

fn canned_event(session: &pb::Session, previous: pb::SessionStatus) -> pb::SessionEvent {
    pb::SessionEvent {
        occurred_at: ts(1_795_421_100, 654_321_000),
        session: Some(session.clone()),
        previous_status: previous as i32,
    }
}

/// The events of the WatchEvents fan-out, by number (the n-th CreateSession made while
/// streams were open); `Ceiling::created` holds the last number.
#[derive(Default)]
struct Feed {
    events: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<pb::Event>>>,
    created: std::sync::atomic::AtomicU64,
}

impl Feed {
    /// The CreateSession answer for the next session, and its event for the streams.
    fn create(&self, canned: &pb::CreateSessionResponse) -> (pb::CreateSessionResponse, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        let mut events = self.events.lock().expect("feed lock");
        let n = self.created.fetch_add(1, SeqCst) + 1;
        let mut reply = canned.clone();
        let mut session = reply.session.take().unwrap_or_default();
        // Same length as the canned id: the last digits count the sessions.
        let tail = n.to_string();
        session
            .id
            .truncate(session.id.len().saturating_sub(tail.len()));
        session.id.push_str(&tail);
        events.insert(
            n,
            Arc::new(pb::Event {
                // As long as the service's cursors (base64url of `ev1:<store>:<env>:<tx>.<seq>`).
                cursor: format!("ZXYxOnN0X1hrMkpxOFZkMFBiTDdyVHozTmNXNWg6dGVzdDo{n:0>12}"),
                r#type: pb::EventType::SessionCreated as i32,
                session_id: session.id.clone(),
                occurred_at: session.created_at,
                session: Some(session.clone()),
            }),
        );
        reply.session = Some(session);
        (reply, n)
    }
}

struct Ceiling {
    canned: Arc<Canned>,
    feed: Arc<Feed>,
    /// How many sessions CreateSession made: WatchEvents streams wait on it.
    created: watch::Sender<u64>,
    /// Bumped by every ExpireSession: each stream open before it gets its terminal event.
    /// A `watch` channel, as the service's hub (src/events.rs) uses to wake its streams.
    endings: watch::Sender<u64>,
}

type Reply<T> = Result<Response<T>, Status>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SessionEvent, Status>> + Send>>;

#[tonic::async_trait]
impl CheckoutService for Ceiling {
    async fn create_session(
        &self,
        _req: Request<pb::CreateSessionRequest>,
    ) -> Reply<pb::CreateSessionResponse> {
        // Without WatchEvents streams, exactly the canned answer (the CreateSession ceiling).
        if self.created.receiver_count() == 0 {
            return Ok(Response::new(self.canned.create.clone()));
        }
        let (reply, n) = self.feed.create(&self.canned.create);
        self.created.send_if_modified(|c| {
            let newer = n > *c;
            *c = (*c).max(n);
            newer
        });
        Ok(Response::new(reply))
    }

    async fn get_session(&self, _req: Request<pb::GetSessionRequest>) -> Reply<pb::Session> {
        Ok(Response::new(self.canned.session.clone()))
    }

    type WatchSessionStream = EventStream;

    async fn watch_session(
        &self,
        _req: Request<pb::WatchSessionRequest>,
    ) -> Reply<Self::WatchSessionStream> {
        let mut ending = self.endings.subscribe();
        let canned = self.canned.clone();
        let first = futures_util::stream::once(std::future::ready(Ok(canned.watch_open.clone())));
        // Like the service, the event is cloned per stream and tonic encodes it per stream.
        let end = futures_util::stream::once(async move {
            match ending.changed().await {
                Ok(()) => Ok(canned.watch_end.clone()),
                Err(_) => Err(Status::unavailable("the ceiling is stopping")),
            }
        });
        Ok(Response::new(Box::pin(futures_util::StreamExt::chain(
            first, end,
        ))))
    }

    async fn list_sessions(
        &self,
        _req: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        Err(outside_the_ceiling())
    }

    async fn expire_session(&self, _req: Request<pb::ExpireSessionRequest>) -> Reply<pb::Session> {
        self.endings.send_modify(|n| *n += 1);
        Ok(Response::new(self.canned.expired.clone()))
    }

    async fn list_events(
        &self,
        _req: Request<pb::ListEventsRequest>,
    ) -> Reply<pb::ListEventsResponse> {
        Err(outside_the_ceiling())
    }

    type WatchEventsStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

    async fn watch_events(
        &self,
        _req: Request<pb::WatchEventsRequest>,
    ) -> Reply<Self::WatchEventsStream> {
        // From "now", like a WatchEvents without a cursor.
        let mut created = self.created.subscribe();
        let last = *created.borrow_and_update();
        let feed = self.feed.clone();
        let pending = std::collections::VecDeque::new();
        let stream = futures_util::stream::unfold(
            (created, last, pending),
            move |(mut created, mut last, mut pending)| {
                let feed = feed.clone();
                async move {
                    while pending.is_empty() {
                        created.changed().await.ok()?;
                        let now = *created.borrow_and_update();
                        let events = feed.events.lock().expect("feed lock");
                        pending.extend(events.range(last + 1..=now).map(|(_, e)| e.clone()));
                        last = now;
                    }
                    let event: Arc<pb::Event> = pending.pop_front()?;
                    // Cloned per stream, as the service clones its shared page's events.
                    Some((Ok(pb::Event::clone(&event)), (created, last, pending)))
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

/// SIGTERM or ctrl-c.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let canned = match &args.replies {
        Some(dir) => Canned::read(dir)?,
        None => Canned::built_in(),
    };
    // The same accepted-socket and HTTP/2 settings as the service (src/startup.rs), with
    // TCP_NODELAY set on every accepted socket.
    let incoming = TcpIncoming::bind(args.listen)?
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let addr = incoming.local_addr()?;
    println!(
        "checkout-ceiling listening on {addr} (GetSession reply {} bytes, CreateSession reply {} bytes, WatchSession events {} and {} bytes)",
        canned.session.encoded_len(),
        canned.create.encoded_len(),
        canned.watch_open.encoded_len(),
        canned.watch_end.encoded_len(),
    );
    let service = CheckoutServiceServer::new(Ceiling {
        canned: Arc::new(canned),
        endings: watch::channel(0).0,
        feed: Arc::default(),
        created: watch::channel(0).0,
    })
    .max_decoding_message_size(args.max_decoding_message_bytes);
    Server::builder()
        .max_concurrent_streams(args.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .timeout(Duration::from_millis(30_000))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop_signal())
        .await?;
    Ok(())
}

/// The ceiling measures GetSession, CreateSession and the two fan-outs only; the
/// other methods are not part of any comparison, so they say so with the status gRPC
/// defines for it.
fn outside_the_ceiling() -> Status {
    Status::new(
        tonic::Code::Unimplemented,
        "the ceiling answers GetSession, CreateSession, WatchSession, ExpireSession and WatchEvents only",
    )
}
