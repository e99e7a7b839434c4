//! The webhook dispatcher every replica runs: it claims due jobs from the outbox under a
//! lease, POSTs each event to its endpoint signed per Standard Webhooks, and records every
//! attempt. Delivery is at least once: a job whose dispatcher died is claimed again when
//! its lease runs out; receivers de-duplicate on `webhook-id`.
use crate::{
    db::{
        outbox::{self, Attempt, Job, Next},
        Db,
    },
    domain::{
        time::Timestamp,
        webhook::{retry_delay, sign, WebhookUrl},
        Environment,
    },
};
use futures_util::{stream, StreamExt};
use std::{sync::Arc, time::Duration, time::Instant};
use tokio::sync::{watch, Notify};
use tracing::Instrument;

/// Dispatcher settings. Env vars: `CHECKOUT_WEBHOOK_DISPATCHER` (true),
/// `CHECKOUT_WEBHOOK_POLL_MS` (500), `CHECKOUT_WEBHOOK_TIMEOUT_MS` (15000),
/// `CHECKOUT_WEBHOOK_RETRY_BASE_MS` (5000), `CHECKOUT_WEBHOOK_RETRY_MAX_MS` (3600000),
/// `CHECKOUT_WEBHOOK_MAX_ATTEMPTS` (15), and `CHECKOUT_WEBHOOK_ALLOW_PRIVATE_TARGETS`.
#[derive(clap::Args, Debug, Clone)]
pub struct DispatchConfig {
    /// Run a dispatcher in this replica (turn off to dispatch from dedicated replicas only).
    #[arg(long, env = "CHECKOUT_WEBHOOK_DISPATCHER", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook_dispatcher: bool,
    /// How often to look for due deliveries (new events on this replica wake it at once).
    #[arg(long, env = "CHECKOUT_WEBHOOK_POLL_MS", default_value_t = 500)]
    pub webhook_poll_ms: u64,
    /// Per-attempt HTTP timeout.
    #[arg(long, env = "CHECKOUT_WEBHOOK_TIMEOUT_MS", default_value_t = 15_000)]
    pub webhook_timeout_ms: u64,
    /// Delay after the first failure; doubles per failure.
    #[arg(long, env = "CHECKOUT_WEBHOOK_RETRY_BASE_MS", default_value_t = 5_000)]
    pub webhook_retry_base_ms: u64,
    /// Longest delay between attempts.
    #[arg(
        long,
        env = "CHECKOUT_WEBHOOK_RETRY_MAX_MS",
        default_value_t = 3_600_000
    )]
    pub webhook_retry_max_ms: u64,
    /// Attempts before a delivery is given up (state `failed`).
    #[arg(long, env = "CHECKOUT_WEBHOOK_MAX_ATTEMPTS", default_value_t = 15)]
    pub webhook_max_attempts: u32,
}

/// Jobs claimed per round, all sent at once: a claimed job never waits behind others
/// while its lease runs.
const BATCH: i64 = 16;
const CONCURRENCY: usize = BATCH as usize;

pub struct Dispatcher {
    db: Db,
    metrics: Arc<crate::metrics::Metrics>,
    cfg: DispatchConfig,
    allow_private: bool,
    client: reqwest::Client,
    /// Opens each endpoint's sealed secret per delivery: microseconds, so nothing is cached
    /// and no opened secret outlives the attempt.
    keys: Arc<crate::secrets::Keyring>,
}

/// The error chain of a failed request, for the delivery log. The URL is left out: its
/// query string may carry a receiver's token.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Dispatcher {
    pub fn new(
        db: Db,
        cfg: DispatchConfig,
        allow_private: bool,
        metrics: Arc<crate::metrics::Metrics>,
        keys: Arc<crate::secrets::Keyring>,
    ) -> anyhow::Result<Dispatcher> {
        let client = reqwest::Client::builder()
            // A proxy would be the address the resolver checks, not the target's.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(cfg.webhook_timeout_ms))
            .dns_resolver(Arc::new(crate::webhook_dns::GuardedResolver {
                allow_private,
            }))
            .user_agent(concat!("checkout-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Dispatcher {
            db,
            metrics,
            cfg,
            allow_private,
            client,
            keys,
        })
    }

    pub fn spawn(
        self,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let poll = Duration::from_millis(self.cfg.webhook_poll_ms);
            loop {
                // A round in flight finishes (within one HTTP timeout) so that what was sent
                // is also recorded; then the dispatcher stops claiming.
                self.round().await;
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = wake.notified() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        })
    }

    /// Claims and sends due jobs until none are left.
    async fn round(&self) {
        loop {
            let now = Timestamp::now();
            // The lease outlasts one attempt with room to record it.
            let lease = now.0 + (self.cfg.webhook_timeout_ms as i64 + 15_000) * 1_000;
            let jobs = match outbox::claim(&self.db, now, lease, BATCH).await {
                Ok(jobs) => jobs,
                Err(e) => return tracing::warn!(error = %e, "webhook claim failed"),
            };
            let claimed = jobs.len() as i64;
            stream::iter(jobs)
                .for_each_concurrent(CONCURRENCY, |job| async move {
                    let span = tracing::info_span!("webhook.deliver", event_id = %job.event_id, endpoint_id = %job.endpoint_id);
                    if let Err(e) = self.deliver(&job).instrument(span).await {
                        tracing::warn!(error = %e, event_id = %job.event_id, "recording a webhook attempt failed");
                    }
                })
                .await;
            if claimed < BATCH {
                return;
            }
        }
    }

    async fn deliver(&self, job: &Job) -> crate::error::AppResult<()> {
        let finish = |attempt, next, disable| {
            outbox::finish(&self.db, job, attempt, next, disable, Timestamp::now())
        };
        if job.endpoint_disabled_at.is_some() {
            return finish(None, Next::Disabled, false).await;
        }
        let failed = |failures: i32| {
            if failures as u32 >= self.cfg.webhook_max_attempts {
                Next::Failed
            } else {
                let base = Duration::from_millis(self.cfg.webhook_retry_base_ms);
                let max = Duration::from_millis(self.cfg.webhook_retry_max_ms);
                let delay = retry_delay(failures as u32, base, max);
                Next::RetryAt(Timestamp::now().0 + delay.as_micros() as i64)
            }
        };
        let env: Environment = job.environment.parse().unwrap_or(Environment::Prod);
        // The registration rules again at send time (they may have been relaxed since);
        // host names are checked by the resolver, against what they resolve to now.
        if let Err(e) = WebhookUrl::parse(&job.url, env, self.allow_private) {
            let attempt = Attempt {
                response_status: None,
                success: false,
                error: Some(e.message),
                duration_ms: 0,
            };
            log_failure(job, &attempt);
            return finish(Some(attempt), failed(job.attempts + 1), false).await;
        }
        let aad = crate::db::secrets::endpoint_aad(&job.endpoint_id);
        let secret = match self.keys.open(&job.secret, &aad) {
            Ok(secret) => secret,
            // Retried, not failed: during a rotation another replica (or this one after a
            // restart with the key) can open it. Start refuses rows no key opens, so this
            // is a replica lagging behind a rotation.
            Err(e) => {
                tracing::warn!(endpoint_id = %job.endpoint_id, error = %e, "webhook secret cannot be opened with this replica's keys");
                let attempt = Attempt {
                    response_status: None,
                    success: false,
                    error: Some(format!("endpoint secret cannot be opened here: {e}")),
                    duration_ms: 0,
                };
                return finish(Some(attempt), failed(job.attempts + 1), false).await;
            }
        };
        let timestamp = Timestamp::now().seconds();
        let Some(signature) = sign(&secret, &job.event_id, timestamp, &job.payload) else {
            let attempt = Attempt {
                response_status: None,
                success: false,
                error: Some("endpoint secret is unusable".into()),
                duration_ms: 0,
            };
            log_failure(job, &attempt);
            return finish(Some(attempt), Next::Failed, false).await;
        };
        let signature = match self.previous_signature(job, timestamp) {
            Some(previous) => format!("{signature} {previous}"),
            None => signature,
        };
        let started = Instant::now();
        let sent = self
            .client
            .post(&job.url)
            .header("content-type", "application/json")
            .header("webhook-id", &job.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(job.payload.clone())
            .send()
            .await;
        let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let (attempt, next, disable) = match sent {
            Ok(resp) if resp.status().is_success() => {
                let a = Attempt {
                    response_status: Some(resp.status().as_u16().into()),
                    success: true,
                    error: None,
                    duration_ms,
                };
                (a, Next::Delivered, false)
            }
            Ok(resp) if resp.status() == reqwest::StatusCode::GONE => {
                let error = Some("410 Gone: endpoint disabled".to_owned());
                let a = Attempt {
                    response_status: Some(410),
                    success: false,
                    error,
                    duration_ms,
                };
                (a, Next::Disabled, true)
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let error = Some(format!("HTTP {status}"));
                let a = Attempt {
                    response_status: Some(status.into()),
                    success: false,
                    error,
                    duration_ms,
                };
                (a, failed(job.attempts + 1), false)
            }
            Err(e) => {
                let a = Attempt {
                    response_status: None,
                    success: false,
                    error: Some(describe(e)),
                    duration_ms,
                };
                (a, failed(job.attempts + 1), false)
            }
        };
        self.metrics
            .webhook_attempt(match (&attempt.success, attempt.response_status) {
                (true, _) => "delivered",
                (false, Some(410)) => "gone",
                (false, Some(_)) => "http_error",
                (false, None) => "network_error",
            });
        if !attempt.success {
            log_failure(job, &attempt);
        }
        finish(Some(attempt), next, disable).await
    }

    /// The signature with the secret a rotation replaced, while its overlap lasts, so
    /// receivers not yet given the new secret still verify (Standard Webhooks lets
    /// `webhook-signature` carry several space-separated signatures). One that cannot be
    /// opened is left out: the current signature is there regardless.
    fn previous_signature(&self, job: &Job, timestamp: i64) -> Option<String> {
        let expires_at = job.previous_secret_expires_at?;
        if Timestamp::now().0 >= expires_at {
            return None;
        }
        let aad = crate::db::secrets::previous_aad(&job.endpoint_id);
        match self.keys.open(job.previous_secret.as_deref()?, &aad) {
            Ok(secret) => sign(&secret, &job.event_id, timestamp, &job.payload),
            Err(e) => {
                tracing::warn!(endpoint_id = %job.endpoint_id, error = %e, "previous webhook secret cannot be opened with this replica's keys");
                None
            }
        }
    }
}

/// A failed attempt, for the operator: which endpoint and event, the HTTP status or the
/// network error, and how many attempts so far. The URL is left out (it may carry tokens);
/// the endpoint id leads to it.
fn log_failure(job: &Job, attempt: &Attempt) {
    tracing::warn!(
        endpoint_id = %job.endpoint_id,
        event_id = %job.event_id,
        status = attempt.response_status,
        error = attempt.error.as_deref().unwrap_or(""),
        attempt = job.attempts + 1,
        "webhook delivery failed"
    );
}
