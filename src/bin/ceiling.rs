//! checkout-ceiling: a bare tonic server for `checkout.v1.CheckoutService` that answers
//! GetSession and CreateSession with canned messages and does nothing else (no auth, no
//! database, no layers). It is the ceiling the benchmark (`bench/run.sh`) divides the
//! service's numbers by: the same gRPC stack, transport settings and message sizes, with
//! zero work per call. Every credential is accepted; the other methods are UNIMPLEMENTED.
//!
//! The canned replies are built in (a realistic one-line session, every field filled as the
//! service fills it for `checkout-loadgen`'s request), or read from replies captured from
//! the real service (`checkout-loadgen --dump-replies DIR` writes `get.bin` and
//! `create.bin`; pass `--replies DIR`), so the message is byte for byte the real one.
use checkout::pb::{
    self,
    checkout_service_server::{CheckoutService, CheckoutServiceServer},
};
use clap::Parser;
use prost::Message;
use std::{net::SocketAddr, path::PathBuf, pin::Pin, sync::Arc, time::Duration};
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

struct Ceiling {
    session: Arc<pb::Session>,
    create: Arc<pb::CreateSessionResponse>,
}

type Reply<T> = Result<Response<T>, Status>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SessionEvent, Status>> + Send>>;

#[tonic::async_trait]
impl CheckoutService for Ceiling {
    async fn create_session(
        &self,
        _req: Request<pb::CreateSessionRequest>,
    ) -> Reply<pb::CreateSessionResponse> {
        Ok(Response::new((*self.create).clone()))
    }

    async fn get_session(&self, _req: Request<pb::GetSessionRequest>) -> Reply<pb::Session> {
        Ok(Response::new((*self.session).clone()))
    }

    type WatchSessionStream = EventStream;

    async fn watch_session(
        &self,
        _req: Request<pb::WatchSessionRequest>,
    ) -> Reply<Self::WatchSessionStream> {
        Err(outside_the_ceiling())
    }

    async fn list_sessions(
        &self,
        _req: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        Err(outside_the_ceiling())
    }

    async fn expire_session(&self, _req: Request<pb::ExpireSessionRequest>) -> Reply<pb::Session> {
        Err(outside_the_ceiling())
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
        Err(outside_the_ceiling())
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
    let (session, create) = match &args.replies {
        Some(dir) => (
            read_reply::<pb::Session>(dir, "get.bin")?,
            read_reply::<pb::CreateSessionResponse>(dir, "create.bin")?,
        ),
        None => {
            let s = canned_session();
            let c = canned_create(&s);
            (s, c)
        }
    };
    // The same accepted-socket and HTTP/2 settings as the service (src/startup.rs), with
    // TCP_NODELAY set on every accepted socket.
    let incoming = TcpIncoming::bind(args.listen)?
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let addr = incoming.local_addr()?;
    println!(
        "checkout-ceiling listening on {addr} (GetSession reply {} bytes, CreateSession reply {} bytes)",
        session.encoded_len(),
        create.encoded_len()
    );
    let service = CheckoutServiceServer::new(Ceiling {
        session: Arc::new(session),
        create: Arc::new(create),
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

/// The ceiling measures GetSession and CreateSession only; the other methods are not part of
/// any comparison, so they say so with the status gRPC defines for it.
fn outside_the_ceiling() -> Status {
    Status::new(
        tonic::Code::Unimplemented,
        "the ceiling answers GetSession and CreateSession only",
    )
}
