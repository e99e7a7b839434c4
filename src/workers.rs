//! Background work every replica runs: the expiry sweeper and, on Postgres, the listener
//! that brings other replicas' session changes to this replica's watchers.
use crate::{
    db::{lifecycle, Db},
    domain::time::Timestamp,
    events::Hub,
    grpc::auth_cache::AuthCache,
    metrics::Metrics,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};
use tracing::Instrument;

/// Sweeps often enough that an open session past its expiry is EXPIRED within 1 s.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
const SWEEP_BATCH: i64 = 500;
/// Idempotency keys past their retention are purged about once a second: when there is
/// nothing to purge that costs one read of the first entry of the created_at index.
const PURGE_EVERY: Duration = Duration::from_secs(1);
/// Keys deleted per statement: small enough that SQLite's write lock (and Postgres row
/// locks) are held briefly even when a large backlog is purged for the first time.
const PURGE_BATCH: i64 = 1000;

pub fn spawn_sweeper(
    db: Db,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    idempotency_retention: Duration,
    event_retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first purge waits a period: startup is busy enough, and it has no hurry.
        let mut last_purge = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Drain: a full batch means there may be more right now (until shutdown: the
            // next replica to start takes over the backlog).
            let mut reachable = true;
            while !*shutdown.borrow() {
                let sweep = lifecycle::sweep_expired(&db, Timestamp::now(), SWEEP_BATCH)
                    .instrument(tracing::debug_span!("sweeper.sweep"))
                    .await;
                match sweep {
                    Ok(ids) => {
                        for id in &ids {
                            hub.notify(id);
                            metrics.session_ended("expired");
                        }
                        if !ids.is_empty() {
                            hub.feed.published_all(); // one per sweep, for its stores
                            tracing::info!(count = ids.len(), "expired sessions");
                        }
                        if (ids.len() as i64) < SWEEP_BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "expiry sweep failed; retrying");
                        reachable = false;
                        break;
                    }
                }
            }
            // After the expiry sweep (which has a latency promise; this has none), and not
            // while the database is failing: one more caller waiting out the pool's connect
            // timeout would only slow the recovery of the calls that matter.
            if reachable && last_purge.elapsed() >= PURGE_EVERY {
                last_purge = std::time::Instant::now();
                purge_idempotency_keys(&db, idempotency_retention, &mut shutdown).await;
                purge_feed_events(&db, event_retention, &mut shutdown).await;
            }
        }
    })
}

/// Deletes idempotency keys older than the retention, batch by batch until none is left
/// (or shutdown). A purged key is free again: the same key then creates a new session.
async fn purge_idempotency_keys(
    db: &Db,
    retention: Duration,
    shutdown: &mut watch::Receiver<bool>,
) {
    let cutoff = Timestamp(Timestamp::now().0 - retention.as_micros() as i64);
    loop {
        let purge = lifecycle::purge_idempotency_keys(db, cutoff, PURGE_BATCH)
            .instrument(tracing::debug_span!("sweeper.purge_idempotency_keys"))
            .await;
        match purge {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(count = n, "purged idempotency keys past their retention");
                }
                if (n as i64) < PURGE_BATCH || *shutdown.borrow() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "idempotency key purge failed; retrying");
                return;
            }
        }
    }
}

/// Deletes feed events older than the retention, batch by batch (db::feed::purge).
async fn purge_feed_events(db: &Db, retention: Duration, shutdown: &mut watch::Receiver<bool>) {
    let cutoff = Timestamp::now().0 - retention.as_micros() as i64;
    loop {
        let purge = crate::db::feed::purge(db, cutoff, PURGE_BATCH)
            .instrument(tracing::debug_span!("sweeper.purge_feed_events"))
            .await;
        match purge {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(count = n, "purged feed events past their retention");
                }
                if (n as i64) < PURGE_BATCH || *shutdown.borrow() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "feed event purge failed; retrying");
                return;
            }
        }
    }
}

pub const SESSION_EVENTS_CHANNEL: &str = "checkout_session_events";
/// A key or store changed: replicas drop their cached credentials (grpc::auth_cache).
pub const AUTH_CHANGES_CHANNEL: &str = "checkout_auth_changes";
/// An event feed grew; the payload is `<announcer id> <store id> <environment>`, or
/// `<announcer id> *` for any feed (src/feed.rs).
pub const FEED_CHANNEL: &str = "checkout_feed";
/// The listener's connection is findable (and killable, in tests) by this name.
pub const LISTENER_APPLICATION_NAME: &str = "checkout-listener";

/// LISTENs on one dedicated connection (not from the pool) and forwards session ids to the
/// hub. After every (re)connect it wakes every watcher, so what happened while it was
/// disconnected is read back instead of lost. A liveness probe every few seconds notices a
/// connection that died silently.
pub fn spawn_pg_listener(
    url: String,
    hub: Arc<Hub>,
    auth: Arc<AuthCache>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let session = listen(&url, &hub, &auth, &mut shutdown).await;
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = session {
                tracing::warn!(error = %e, ?backoff, "session event listener disconnected; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

/// How long the listener waits for the database before treating the connection as dead.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(5);

async fn listen(
    url: &str,
    hub: &Hub,
    auth: &AuthCache,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut conn = tokio::select! {
        conn = tokio::time::timeout(LISTENER_TIMEOUT, AsyncPgConnection::establish(url)) => conn??,
        _ = shutdown.wait_for(|s| *s) => return Ok(()),
    };
    let listen = format!(
        "SET application_name = '{LISTENER_APPLICATION_NAME}'; \
         LISTEN {SESSION_EVENTS_CHANNEL}; LISTEN {AUTH_CHANGES_CHANNEL}; \
         LISTEN {FEED_CHANNEL}"
    );
    tokio::time::timeout(LISTENER_TIMEOUT, conn.batch_execute(&listen)).await??;
    tracing::info!("listening for session events");
    // Anything may have changed while no one listened.
    auth.clear();
    hub.notify_all();
    loop {
        {
            let mut events = std::pin::pin!(conn.notifications_stream());
            let probe = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(probe);
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(n)) if n.channel == AUTH_CHANGES_CHANNEL => auth.clear(),
                        Some(Ok(n)) if n.channel == FEED_CHANNEL => feed_announced(&hub.feed, &n.payload),
                        Some(Ok(n)) => hub.notify(&n.payload),
                        Some(Err(e)) => return Err(e.into()),
                        None => anyhow::bail!("notification stream ended"),
                    },
                    _ = &mut probe => break,
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
        // Notifications arriving meanwhile stay queued on the connection.
        tokio::time::timeout(LISTENER_TIMEOUT, conn.batch_execute("SELECT 1")).await??;
    }
}

/// Wakes the feeds another replica announced (its own commits woke this replica's
/// watchers already: one more wake-up would only send them all to read again).
fn feed_announced(feed: &crate::feed::FeedHub, payload: &str) {
    let Some((id, what)) = payload.split_once(' ') else {
        return;
    };
    if id.parse().is_ok_and(|id| feed.is_own(id)) {
        return;
    }
    match what.split_once(' ') {
        Some((store, env)) => feed.wake(store, env),
        None => feed.wake_all(),
    }
}

/// At most one announcement per this period: the delay it adds to other replicas' watchers.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(5);

/// Announces this replica's feed commits to every replica's listener (src/feed.rs,
/// `FeedHub::published`): one `checkout_feed` notification per feed, sent after the
/// commit, as one statement for all the feeds announced since the last one was sent. Its
/// transaction writes nothing, so PostgreSQL's notify lock is held for no flush. When the
/// database refuses, the announcements are kept and sent again; a replica that dies before
/// sending leaves the other replicas' watchers to their next wake-up or safety poll.
pub fn spawn_feed_announcer(
    db: Db,
    hub: &crate::feed::FeedHub,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let id = hub.announce_to(tx);
    tokio::spawn(async move {
        let mut pending = std::collections::BTreeSet::new();
        loop {
            if pending.is_empty() {
                tokio::select! {
                    first = rx.recv() => match first {
                        Some(a) => { pending.insert(a); }
                        None => return,
                    },
                    _ = shutdown.changed() => return,
                }
            }
            while let Ok(a) = rx.try_recv() {
                pending.insert(a);
            }
            let payloads: Vec<String> = match pending.contains(&None) {
                true => vec![format!("{id} *")],
                false => pending
                    .iter()
                    .flatten()
                    .map(|(store, env)| format!("{id} {store} {env}"))
                    .collect(),
            };
            // Paced: under load, one notification transaction per period carries every feed
            // written meanwhile, instead of one per commit. A failed one is kept and retried.
            let pause = match crate::db::feed::announce(&db, FEED_CHANNEL, &payloads).await {
                Ok(()) => {
                    pending.clear();
                    ANNOUNCE_EVERY
                }
                Err(e) => {
                    tracing::warn!(error = %e, "announcing feed events failed; retrying");
                    Duration::from_millis(200)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}
