//! checkout-loadgen: a bounded load generator for a running checkout service. It opens
//! sessions (CreateSession) or reads one (GetSession) from many concurrent clients for a
//! fixed time and reports throughput and latency percentiles. Point it only at a service
//! you run (default: this machine).
use checkout::pb::{self, checkout_service_client::CheckoutServiceClient};
use clap::{Parser, ValueEnum};
use std::time::{Duration, Instant};
use tonic::{metadata::MetadataValue, transport::Channel, Request};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// CreateSession with one catalog line.
    Create,
    /// GetSession of one session created first.
    Get,
}

#[derive(Parser, Debug)]
#[command(about = "Load generator for a running checkout service")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// A test-environment secret key (sk_test_…), e.g. the demo key the server printed.
    #[arg(long, env = "CHECKOUT_LOADGEN_API_KEY")]
    api_key: String,
    /// A product sold in test, with a USD price (PROD_…).
    #[arg(long)]
    product: String,
    #[arg(long, value_enum, default_value = "create")]
    mode: Mode,
    /// Concurrent callers (one HTTP/2 connection each, up to 8; then shared).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run (at most 300 s).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn request<T>(msg: T, key: &str) -> Request<T> {
    let mut req = Request::new(msg);
    let auth: MetadataValue<_> = format!("Bearer {key}").parse().expect("ascii key");
    req.metadata_mut().insert("authorization", auth);
    req.metadata_mut()
        .insert("x-context-environment", MetadataValue::from_static("test"));
    req
}

fn order(product: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        lines: vec![pb::LineItem {
            product_id: product.to_owned(),
            quantity: 1,
            ..Default::default()
        }],
        currency: "USD".into(),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs(args.seconds.min(300));
    let mut channels = Vec::new();
    for _ in 0..args.concurrency.clamp(1, 8) {
        channels.push(Channel::from_shared(args.addr.clone())?.connect().await?);
    }
    let session_id = {
        let mut client = CheckoutServiceClient::new(channels[0].clone());
        let created = client
            .create_session(request(order(&args.product), &args.api_key))
            .await?;
        created
            .into_inner()
            .session
            .map(|s| s.id)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|i| {
            let mut client = CheckoutServiceClient::new(channels[i % channels.len()].clone());
            let (key, product, id, mode) = (
                args.api_key.clone(),
                args.product.clone(),
                session_id.clone(),
                args.mode,
            );
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = match mode {
                        Mode::Create => client
                            .create_session(request(order(&product), &key))
                            .await
                            .is_ok(),
                        Mode::Get => {
                            let get = pb::GetSessionRequest {
                                session_id: id.clone(),
                            };
                            client.get_session(request(get, &key)).await.is_ok()
                        }
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (l, e) = w.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "mode={:?} concurrency={} seconds={:.1} ok={} errors={} throughput={:.0}/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        args.mode,
        args.concurrency,
        elapsed,
        latencies.len(),
        errors,
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    Ok(())
}
