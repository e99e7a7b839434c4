//! Session change notifications and the shared state of watched sessions, inside one replica.
//!
//! The hub keeps one entry per watched session id, however many streams watch it. A
//! notification carries only "session X changed"; the entry's single refresher task then
//! reads the session once (`get_any`) and publishes the result, an immutable [`Snapshot`],
//! to every watcher through a `watch` channel. So one change costs one read, not one read
//! per watcher, and a watcher that falls behind simply sees the latest snapshot.
//!
//! Why nothing is missed:
//! - Notifications are sent after the change committed, and the refresher starts a read
//!   after every notification it takes. A notification that arrives while a read is in
//!   flight leaves one pending wake-up (a `Notify` permit), so the refresher reads once more
//!   afterwards: a burst costs at most two reads, and the last one is never lost.
//! - A watcher subscribes before it reads the session itself, so a change that commits
//!   after its read is published to it by a read that started after the change.
//! - Time also changes a session: past `expires_at` it reads as EXPIRED before the sweeper
//!   wrote that. Each entry has one timer for its session's expiry (not one per watcher).
//! - Other replicas' changes arrive through the Postgres listener, which calls
//!   `notify_all` after every reconnect, so a notification lost while it was down is read
//!   back. A failed read is retried after a pause.
//!
//! Shutdown travels the same way: [`Hub::close`] publishes [`Published::Closed`] to every
//! entry, so a stream waits on its one channel only. (A per-stream wait on the server's
//! shutdown signal registered 10,000 waiters on one `Notify`, and ending those streams
//! unlinked each of them under its lock: about 6 % of the server's CPU in a fan-out.)
use crate::{
    db::{self, sessions::StoredSession, Db},
    domain::{ids::SessionId, session_state::Status, time::Timestamp},
    error::AppResult,
    grpc::{session_pb::effective_status, watch::EventCache},
    metrics::Metrics,
};
use futures_util::FutureExt;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::{
    sync::{watch, Notify, Semaphore},
    time::Instant,
};

/// A safety net only, not the way changes travel (see the module docs): every watched
/// session is re-read about this often, at a random point of the interval so that entries
/// created together do not resync together. One read per watched session per few minutes
/// is noise even with thousands of sessions watched, and nothing at all per watcher.
const SAFETY_RESYNC: Duration = Duration::from_secs(300);
/// After a failed read, the refresher waits this long before reading again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Reads the hub runs at once. After a listener reconnect every entry reads; capped, they
/// cannot take the whole pool away from API calls.
const MAX_CONCURRENT_READS: usize = 4;
/// Expiry is checked this long after `expires_at`, so the read is surely past it.
const EXPIRY_SLACK_MICROS: i64 = 5_000;
/// `expires_at` of an entry whose session cannot expire any more (ended, gone, unknown).
const NO_EXPIRY: i64 = i64::MAX;

/// One read of a watched session, shared by all its watchers.
pub struct Snapshot {
    /// `None`: the session no longer exists.
    pub stored: Option<StoredSession>,
    /// When the read finished; the effective status is as of this time.
    pub read_at: Timestamp,
    /// The stream events made from this snapshot, built once and shared (grpc::watch).
    pub events: EventCache,
}

impl Snapshot {
    /// The status as clients see it; `Ok(None)` if the session is gone.
    pub fn status(&self) -> AppResult<Option<Status>> {
        self.stored
            .as_ref()
            .map(|s| effective_status(&s.session.status, s.session.expires_at, self.read_at))
            .transpose()
    }
}

/// What an entry's channel holds.
#[derive(Clone)]
pub enum Published {
    /// Before the refresher's first read: watchers start from a read of their own.
    Unread,
    Snapshot(Arc<Snapshot>),
    /// The server is shutting down; final, nothing is published after it.
    Closed,
}

struct Entry {
    snapshot: watch::Sender<Published>,
    /// "Read again": one stored permit is what coalesces a burst of notifications.
    stale: Notify,
    /// When the session turns EXPIRED by the clock, or NO_EXPIRY.
    expires_at: AtomicI64,
    /// Wakes the refresher to re-arm its timer after a watcher told it `expires_at`.
    rearm: Notify,
}

pub struct Hub {
    db: Db,
    metrics: Arc<Metrics>,
    reads: Arc<Semaphore>,
    sessions: Mutex<HashMap<String, Arc<Entry>>>,
    /// Set (under the `sessions` lock) by `close`: entries made later start closed.
    closed: AtomicBool,
    /// Woken on every session change: an ending may have put a webhook in the outbox.
    pub outbox: Arc<Notify>,
    /// Event feed watchers (src/feed.rs), woken by the same changes.
    pub feed: Arc<crate::feed::FeedHub>,
}

/// A watcher's interest in one session; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: String,
    entry: Arc<Entry>,
    rx: Option<watch::Receiver<Published>>,
}

impl Subscription {
    /// The next snapshot published after the last one this subscription returned (or after
    /// it was taken); `None` once the server is shutting down (at once if it already is).
    pub async fn changed(&mut self) -> Option<Arc<Snapshot>> {
        let rx = self.rx.as_mut().expect("live subscription");
        loop {
            if let Published::Closed = *rx.borrow() {
                return None;
            }
            if rx.changed().await.is_err() {
                // The entry lives as long as its receivers; wait forever rather than spin.
                std::future::pending::<()>().await;
            }
            match &*rx.borrow_and_update() {
                Published::Snapshot(snapshot) => return Some(snapshot.clone()),
                Published::Closed => return None,
                Published::Unread => {}
            }
        }
    }

    /// Tells the hub when the session expires, from the watcher's own first read, so that
    /// an entry nobody notified yet still wakes its watchers at expiry (`expires_at` never
    /// changes after creation, so the first one told is right).
    pub fn expires_at(&self, at: i64) {
        let set = self.entry.expires_at.compare_exchange(
            NO_EXPIRY,
            at,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if set.is_ok() {
            self.entry.rearm.notify_one();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Under the lock, so that the receiver count reaches zero and the entry leaves the
        // map in one step: subscribe never joins an entry whose refresher has stopped.
        let mut sessions = self.hub.sessions.lock().expect("hub lock");
        drop(self.rx.take());
        if self.entry.snapshot.receiver_count() == 0
            && sessions
                .get(&self.id)
                .is_some_and(|e| Arc::ptr_eq(e, &self.entry))
        {
            sessions.remove(&self.id);
        }
    }
}

impl Hub {
    pub fn new(db: Db, metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            db,
            metrics,
            reads: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
            sessions: Mutex::default(),
            closed: AtomicBool::new(false),
            outbox: Arc::default(),
            feed: Arc::default(),
        })
    }

    /// Subscribe before reading the session, so no change can slip between the two.
    pub fn subscribe(self: &Arc<Self>, id: &str) -> Subscription {
        let mut sessions = self.sessions.lock().expect("hub lock");
        let (entry, created) = match sessions.get(id) {
            Some(entry) => (entry.clone(), false),
            None => {
                let first = if self.closed.load(Ordering::Relaxed) {
                    Published::Closed
                } else {
                    Published::Unread
                };
                let entry = Arc::new(Entry {
                    snapshot: watch::channel(first).0,
                    stale: Notify::new(),
                    expires_at: AtomicI64::new(NO_EXPIRY),
                    rearm: Notify::new(),
                });
                sessions.insert(id.to_owned(), entry.clone());
                (entry, true)
            }
        };
        // The receiver exists before the refresher starts: it stops when there is none.
        let rx = entry.snapshot.subscribe();
        if created {
            let refresher = Refresher {
                db: self.db.clone(),
                metrics: self.metrics.clone(),
                reads: self.reads.clone(),
                id: SessionId::from_trusted(id.to_owned()),
                entry: entry.clone(),
            };
            tokio::spawn(refresher.run());
        }
        Subscription {
            hub: self.clone(),
            id: id.to_owned(),
            entry,
            rx: Some(rx),
        }
    }

    pub fn notify(&self, id: &str) {
        self.outbox.notify_one();
        if let Some(entry) = self.sessions.lock().expect("hub lock").get(id) {
            entry.stale.notify_one();
        }
    }

    /// Every entry re-reads: after the listener reconnected, anything may have changed.
    pub fn notify_all(&self) {
        self.feed.wake_all();
        for entry in self.sessions.lock().expect("hub lock").values() {
            entry.stale.notify_one();
        }
    }

    /// Every watcher's stream ends (the server is shutting down), now and from now on.
    pub fn close(&self) {
        let sessions = self.sessions.lock().expect("hub lock");
        self.closed.store(true, Ordering::Relaxed);
        for entry in sessions.values() {
            entry.snapshot.send_replace(Published::Closed);
        }
    }

    /// Sessions watched right now (entries, not streams).
    pub fn watched(&self) -> usize {
        self.sessions.lock().expect("hub lock").len()
    }
}

/// The one task per watched session that reads it and publishes the result.
struct Refresher {
    db: Db,
    metrics: Arc<Metrics>,
    reads: Arc<Semaphore>,
    id: SessionId,
    entry: Arc<Entry>,
}

impl Refresher {
    async fn run(self) {
        let entry = &self.entry;
        let mut resync_at = next_resync();
        loop {
            let expires_at = entry.expires_at.load(Ordering::Relaxed);
            let wake = resync_at.min(expiry_instant(expires_at));
            tokio::select! {
                // No watcher left: the entry is already out of the map (see Drop above).
                () = entry.snapshot.closed() => return,
                () = entry.stale.notified() => {}
                () = entry.rearm.notified() => continue,
                () = tokio::time::sleep_until(wake) => {}
            }
            let Some(stored) = self.read().await else {
                return;
            };
            resync_at = next_resync();
            let snapshot = Snapshot {
                stored,
                read_at: Timestamp::now(),
                events: EventCache::default(),
            };
            let status = snapshot.status();
            let expires_at = match (&status, &snapshot.stored) {
                (Ok(Some(Status::Open)), Some(s)) => s.session.expires_at,
                _ => NO_EXPIRY,
            };
            entry.expires_at.store(expires_at, Ordering::Relaxed);
            // Watchers act on status changes only, so a read that changed nothing (the
            // notification was about an earlier change, a resync, a Postgres echo of this
            // replica's own change) wakes no one. Statuses only move forward (OPEN, then
            // one ending), so a watcher never needs a snapshot equal to the previous one.
            let key = status.ok();
            entry.snapshot.send_if_modified(|current| {
                let changed = match current {
                    Published::Closed => return false,
                    Published::Unread => true,
                    Published::Snapshot(c) => c.status().ok() != key,
                };
                *current = Published::Snapshot(Arc::new(snapshot));
                changed
            });
        }
    }

    /// Reads the session, retrying after a pause on failure; `None` once nobody watches.
    async fn read(&self) -> Option<Option<StoredSession>> {
        loop {
            let permit = tokio::select! {
                permit = self.reads.acquire() => permit.expect("the semaphore is never closed"),
                () = self.entry.snapshot.closed() => return None,
            };
            // This read starts after any notification already waiting, so it answers that
            // one too: take it now rather than read twice.
            let _ = self.entry.stale.notified().now_or_never();
            self.metrics.watch_session_read();
            let read = db::sessions::get_any(&self.db, &self.id).await;
            drop(permit);
            match read {
                Ok(stored) => return Some(stored),
                Err(e) => {
                    tracing::warn!(error = %e, session_id = %self.id, "watch: session read failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        () = self.entry.snapshot.closed() => return None,
                    }
                }
            }
        }
    }
}

fn next_resync() -> Instant {
    let spread = rand::random_range(0..SAFETY_RESYNC.as_millis() as u64);
    Instant::now() + SAFETY_RESYNC / 2 + Duration::from_millis(spread)
}

/// When to read for expiry: just after `expires_at` by the wall clock (which is what
/// `effective_status` compares with). Capped, so a far or absent expiry is just "later".
fn expiry_instant(expires_at: i64) -> Instant {
    let wait = expires_at
        .saturating_sub(Timestamp::now().0)
        .max(0)
        .saturating_add(EXPIRY_SLACK_MICROS);
    Instant::now() + Duration::from_micros(wait as u64).min(SAFETY_RESYNC * 2)
}
