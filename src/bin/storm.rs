//! checkout-storm: rounds of idle-connection storms against a running service (one you run,
//! on this machine: it reads the server's RSS from /proc), for measuring whether memory is
//! given back afterwards (issue 10, item 10). Each round opens `--connections` HTTP/2
//! connections, makes one Health/Check on each, holds them idle, closes them all, waits
//! `--settle-seconds`, and prints the server's RSS at the start of the round, at its peak
//! and after. Bounded: at most 50 rounds of at most 20,000 connections. `bench/storm.sh`
//! runs it against a fresh release build; it is not part of `cargo test`.
use clap::Parser;
use futures_util::{stream, StreamExt};
use std::time::Duration;
use tonic::transport::Endpoint;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

#[derive(Parser, Debug)]
#[command(about = "Idle-connection storms against a local checkout service; prints its RSS")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// The server's process id (its RSS is read from /proc/PID/status).
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    connections: u32,
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// How long the connections stay open, idle, after the last one is up.
    #[arg(long, default_value_t = 2)]
    hold_seconds: u64,
    /// How long to wait after closing them before reading the RSS again.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u64,
}

/// Resident set size of `pid` in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kib / 1024.0)
}

/// Open file descriptors of `pid`: whether the server closed the connections.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Opens the connections (256 at a time) and makes one call on each; returns the open
/// channels and how many failed.
async fn storm(endpoint: &Endpoint, n: u32) -> (Vec<tonic::transport::Channel>, usize) {
    let results: Vec<_> = stream::iter(0..n)
        .map(|_| async {
            let channel = endpoint.connect().await.ok()?;
            HealthClient::new(channel.clone())
                .check(HealthCheckRequest::default())
                .await
                .ok()?;
            Some(channel)
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let failed = results.iter().filter(|c| c.is_none()).count();
    (results.into_iter().flatten().collect(), failed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One descriptor per connection here too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let endpoint = Endpoint::from_shared(args.target.clone())?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    let start = rss_mib(args.pid)?;
    println!(
        "{} connections per round, {} rounds; server RSS at start {start:.1} MiB",
        args.connections, args.rounds
    );
    println!("round  before_MiB  peak_MiB  after_MiB  failed  server_fds_after");
    let mut last_after = start;
    for round in 1..=args.rounds {
        let before = rss_mib(args.pid)?;
        let (channels, failed) = storm(&endpoint, args.connections).await;
        let mut peak = rss_mib(args.pid)?;
        tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
        peak = peak.max(rss_mib(args.pid)?);
        drop(channels);
        tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
        let after = rss_mib(args.pid)?;
        let fds = open_fds(args.pid);
        println!("{round:>5}  {before:>10.1}  {peak:>8.1}  {after:>9.1}  {failed:>6}  {fds:>16}");
        last_after = after;
    }
    println!("server RSS at start {start:.1} MiB, after the last round {last_after:.1} MiB");
    Ok(())
}
