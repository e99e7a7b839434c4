//! The closed and open loops of `create` and `get`.
use super::{code_name, unix_us, Args, Caller, Errors, CALLS, DRAIN, MAX_SECONDS};
use checkout::pb::checkout_service_client::CheckoutServiceClient;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, Semaphore};
use tonic::{transport::Channel, Status};

#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: Errors,
    pub(crate) reply_bytes: usize,
    /// Open loop: how late calls started against their schedule.
    pub(crate) lags: Vec<Duration>,
    /// Open loop: calls still unanswered when the drain time ran out.
    pub(crate) unfinished: u64,
    /// Open loop: calls scheduled in the measured time.
    pub(crate) scheduled: u64,
}

pub(crate) async fn closed_loop(
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
    let mut out = Outcome::default();
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

pub(crate) async fn open_loop(
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
        scheduled: measured_calls,
        ..Outcome::default()
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
