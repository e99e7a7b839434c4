//! `feed` mode (issue 12 item 6): `--consumers` WatchEvents streams on the key's store, then
//! `--events` CreateSession calls one at a time, `--gap-ms` apart; for every (consumer,
//! event) pair, the time from the call's send (and from its reply) to the consumer's receipt,
//! and whether every consumer saw every event exactly once, in order.
//!
//! Streams start at "now" (no cursor, SPEC §11). A stream is known to be live only when an
//! event has reached it, so a warm-up session is created first and the measured events start
//! only when every open stream has seen it.
use super::{percentiles, Args, Caller, Errors, EVENT_WAIT};
use checkout::pb::{self, checkout_service_client::CheckoutServiceClient};
use serde_json::json;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{watch, Semaphore};
use tonic::{transport::Channel, Status};

/// After every consumer has its last event: how long to keep listening for duplicates.
const SETTLE: Duration = Duration::from_millis(300);
/// Opening every stream: the longest wait.
const OPEN_WAIT: Duration = Duration::from_secs(120);

/// One event as a consumer received it.
struct Seen {
    session_id: String,
    created: bool,
    cursor: String,
    at: Instant,
}

/// What one consumer saw until the run told it to stop.
enum Consumer {
    OpenFailed(Status),
    /// `lost`: the stream ended (or failed) before the stop.
    Done {
        seen: Vec<Seen>,
        lost: Option<Option<Status>>,
    },
}

/// Counters the consumers advance so the run knows when to go on.
#[derive(Default)]
struct Progress {
    opened: AtomicUsize,
    failed: AtomicUsize,
    /// Streams that ended or failed before the run stopped them.
    ended: AtomicUsize,
    /// Consumers that have received at least one event (the warm-up).
    warm: AtomicUsize,
    /// SESSION_CREATED events each consumer has received.
    created: Vec<AtomicUsize>,
}

async fn consume(
    mut client: CheckoutServiceClient<Channel>,
    caller: Caller,
    opening: Arc<Semaphore>,
    progress: Arc<Progress>,
    me: usize,
    mut stop: watch::Receiver<bool>,
) -> Consumer {
    let slot = opening.acquire_owned().await;
    let mut req = caller.request(pb::WatchEventsRequest::default());
    // A stream has no deadline; opening it does (enforced below).
    req.metadata_mut().remove("grpc-timeout");
    // The call returns with the response headers, which the server sends once it has taken
    // the stream's starting position (SPEC §11: empty cursor = now).
    let mut stream = match tokio::time::timeout(caller.timeout, client.watch_events(req)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => {
            progress.failed.fetch_add(1, Ordering::Relaxed);
            return Consumer::OpenFailed(s);
        }
        Err(_) => {
            progress.failed.fetch_add(1, Ordering::Relaxed);
            return Consumer::OpenFailed(Status::deadline_exceeded("opening the stream"));
        }
    };
    drop(slot);
    progress.opened.fetch_add(1, Ordering::Relaxed);
    let mut seen = Vec::new();
    let lost = loop {
        tokio::select! {
            biased;
            m = stream.message() => match m {
                Ok(Some(ev)) => {
                    let at = Instant::now();
                    let is_created = ev.r#type == pb::EventType::SessionCreated as i32;
                    if seen.is_empty() {
                        progress.warm.fetch_add(1, Ordering::Relaxed);
                    }
                    seen.push(Seen { session_id: ev.session_id, created: is_created, cursor: ev.cursor, at });
                    if is_created {
                        progress.created[me].fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => break Some(None),
                Err(s) => break Some(Some(s)),
            },
            _ = stop.wait_for(|s| *s) => break None,
        }
    };
    if lost.is_some() {
        progress.ended.fetch_add(1, Ordering::Relaxed);
    }
    Consumer::Done { seen, lost }
}

/// Waits until `done()` or `until`, checking every few milliseconds (the consumers stamp
/// their own receipts, so the polling adds nothing to the measured times).
async fn wait_until(until: Instant, done: impl Fn() -> bool) -> bool {
    while !done() {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// One CreateSession: its session id, when it was sent and when it was answered.
async fn create(
    client: &mut CheckoutServiceClient<Channel>,
    caller: &Caller,
) -> (Result<String, Status>, Instant, Instant) {
    let sent = Instant::now();
    let r = client.create_session(caller.order()).await;
    let replied = Instant::now();
    let id = r.map(|r| r.into_inner().session.map(|s| s.id).unwrap_or_default());
    (id, sent, replied)
}

pub async fn run(args: &Args, caller: &Caller, channels: &[Channel]) -> anyhow::Result<()> {
    let n = args.consumers.clamp(1, 100_000);
    let k = args.events.clamp(1, 10_000);
    let gap = Duration::from_millis(args.gap_ms.min(10_000));
    let opening = Arc::new(Semaphore::new(args.open_concurrency.max(1)));
    let progress = Arc::new(Progress {
        created: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        ..Default::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = CheckoutServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(consume(
                client,
                caller.clone(),
                opening.clone(),
                progress.clone(),
                i,
                stop_rx.clone(),
            ))
        })
        .collect();
    let p = &progress;
    wait_until(started + OPEN_WAIT, || {
        p.opened.load(Ordering::Relaxed) + p.failed.load(Ordering::Relaxed) >= n
    })
    .await;
    let open_seconds = started.elapsed().as_secs_f64();
    let opened = p.opened.load(Ordering::Relaxed);
    eprintln!("feed: {opened} of {n} streams open in {open_seconds:.2}s");

    let mut client = CheckoutServiceClient::new(channels[0].clone());
    let mut create_errors = Errors::default();
    // The warm-up: every open stream must see it before anything is measured.
    let (warm_id, warm_sent, _) = create(&mut client, caller).await;
    let warm_id = warm_id.map_err(|s| anyhow::anyhow!("warm-up CreateSession: {s}"))?;
    let warm_all = wait_until(Instant::now() + EVENT_WAIT, || {
        p.warm.load(Ordering::Relaxed) >= opened
    })
    .await;
    let warm_seen = p.warm.load(Ordering::Relaxed);
    eprintln!(
        "feed: {warm_seen} of {opened} streams live (saw the warm-up) in {:.2}s",
        warm_sent.elapsed().as_secs_f64()
    );
    if !warm_all {
        eprintln!("feed: not every stream saw the warm-up; measuring anyway");
    }
    super::hold(args).await;

    // The measured events, one at a time, each `gap` after the previous one's send.
    let mut created: Vec<(String, Instant, Instant)> = Vec::with_capacity(k);
    let mut create_times = Vec::with_capacity(k);
    for i in 0..k {
        let (id, sent, replied) = create(&mut client, caller).await;
        create_times.push(replied - sent);
        match id {
            Ok(id) => created.push((id, sent, replied)),
            Err(s) => create_errors.add(&s),
        }
        if i + 1 < k {
            tokio::time::sleep_until((sent + gap).into()).await;
        }
    }
    // Every open consumer has the warm-up's SESSION_CREATED and the measured ones (or the
    // wait is over); then a little longer, so a late duplicate is counted too.
    let target = created.len() + 1;
    let last_reply = created.last().map_or(warm_sent, |c| c.2);
    let all_done = wait_until(last_reply + EVENT_WAIT, || {
        let complete = p.created.iter();
        let complete = complete
            .filter(|c| c.load(Ordering::Relaxed) >= target)
            .count();
        complete + p.failed.load(Ordering::Relaxed) + p.ended.load(Ordering::Relaxed) >= n
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    stop_tx.send_replace(true);

    let order: HashMap<&str, usize> = created
        .iter()
        .enumerate()
        .map(|(i, c)| (c.0.as_str(), i))
        .collect();
    let (mut from_send, mut from_reply) = (Vec::new(), Vec::new());
    let (mut open_errors, mut lost_errors) = (Errors::default(), Errors::default());
    let (mut exact, mut missing, mut duplicates, mut out_of_order) = (0usize, 0usize, 0usize, 0);
    let (mut lost, mut other_events, mut dup_cursors, mut received) = (0usize, 0usize, 0usize, 0);
    for task in tasks {
        let (seen, lost_with) = match task.await {
            Ok(Consumer::Done { seen, lost }) => (seen, lost),
            Ok(Consumer::OpenFailed(s)) => {
                open_errors.add(&s);
                continue;
            }
            Err(_) => {
                lost += 1;
                continue;
            }
        };
        if let Some(s) = lost_with {
            lost += 1;
            if let Some(s) = s {
                lost_errors.add(&s);
            }
        }
        let mut cursors = std::collections::HashSet::with_capacity(seen.len());
        let mut sequence = Vec::with_capacity(k);
        let mut count = vec![0usize; created.len()];
        for s in &seen {
            if !cursors.insert(s.cursor.as_str()) {
                dup_cursors += 1;
            }
            match order.get(s.session_id.as_str()) {
                Some(&i) if s.created => {
                    sequence.push(i);
                    count[i] += 1;
                    if count[i] == 1 {
                        let (_, sent, replied) = created[i];
                        from_send.push(s.at.saturating_duration_since(sent));
                        from_reply.push(s.at.saturating_duration_since(replied));
                    }
                }
                _ if s.session_id == warm_id => {}
                _ => other_events += 1,
            }
        }
        received += count.iter().filter(|&&c| c > 0).count();
        missing += count.iter().filter(|&&c| c == 0).count();
        duplicates += count.iter().map(|&c| c.saturating_sub(1)).sum::<usize>();
        let in_order = sequence.windows(2).all(|w| w[0] < w[1]);
        if !in_order {
            out_of_order += 1;
        }
        if sequence.len() == created.len() && in_order {
            exact += 1;
        }
    }
    let fs = percentiles(from_send);
    let fr = percentiles(from_reply);
    let ct = percentiles(create_times);
    let pairs = opened * created.len();
    if args.json {
        let v = json!({
            "mode": "feed",
            "addr": args.addr,
            "consumers": n,
            "connections": channels.len(),
            "opened": opened,
            "open_seconds": open_seconds,
            "open_errors_by_code": open_errors.to_json(),
            "warm": warm_seen,
            "events": k,
            "gap_ms": gap.as_millis() as u64,
            "created": created.len(),
            "create_errors_by_code": create_errors.to_json(),
            "create_p50_ms": ct.p50,
            "create_max_ms": ct.max,
            "pairs": pairs,
            "received": received,
            "missing": missing,
            "duplicates": duplicates,
            "duplicate_cursors": dup_cursors,
            "out_of_order": out_of_order,
            "exactly_once_in_order": exact,
            "other_events": other_events,
            "lost": lost,
            "lost_errors_by_code": lost_errors.to_json(),
            "event_wait_seconds": EVENT_WAIT.as_secs(),
            "all_in_time": all_done,
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
            "feed: {n} consumers over {} connections, open {opened} in {open_seconds:.2}s; {} of {k} CreateSession OK (p50 {:.1}ms), {} ms apart",
            channels.len(),
            created.len(),
            ct.p50,
            gap.as_millis()
        );
        println!(
            "pairs {pairs}: received {received}, missing {missing}, duplicates {duplicates} (cursors {dup_cursors}); consumers exactly once in order {exact}, out of order {out_of_order}, lost {lost}; other events {other_events}"
        );
        println!(
            "event → consumer from CreateSession sent: p50={:.1}ms p99={:.1}ms max={:.1}ms; from its reply: p50={:.1}ms p99={:.1}ms max={:.1}ms",
            fs.p50, fs.p99, fs.max, fr.p50, fr.p99, fr.max
        );
        for (what, e) in [
            ("open", &open_errors),
            ("lost streams", &lost_errors),
            ("CreateSession", &create_errors),
        ] {
            if e.total() > 0 {
                println!("{what} errors by code: {}", e.summary());
            }
        }
    }
    Ok(())
}
