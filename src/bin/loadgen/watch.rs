//! `watch`: N WatchSession streams on one session, then ExpireSession; how long each
//! watcher waited for the ending.
use super::{code_name, percentiles, Args, Caller, Errors, EVENT_WAIT, MAX_SECONDS};
use checkout::pb::{self, checkout_service_client::CheckoutServiceClient};
use serde_json::json;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::Semaphore;
use tonic::{transport::Channel, Status};

/// What one watcher saw.
pub(crate) enum Watched {
    /// The stream could not be opened (or its first event never came).
    OpenFailed(Status),
    /// The terminal event arrived at this instant.
    Ended(Instant),
    /// The stream ended or failed before the terminal event.
    Lost(Option<Status>),
}

pub(crate) fn is_terminal(ev: &pb::SessionEvent) -> bool {
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
pub(crate) async fn hold(args: &Args) {
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

pub(crate) async fn watch(
    args: &Args,
    caller: &Caller,
    channels: &[Channel],
) -> anyhow::Result<()> {
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
