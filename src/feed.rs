//! Wake-ups for event feed watchers, inside one replica (the events themselves are always
//! read from the database: see `grpc::feed`).
//!
//! One entry per (store, environment) that has watchers, however many. A wake-up carries
//! no event, only "this feed may have grown": each watcher then reads what is after its own
//! position. So live delivery and replay are the same read, a slow watcher costs no buffer
//! here (it reads later, from the database), and a wake-up that arrives while a watcher is
//! reading is kept (a `watch` channel remembers "changed since last seen") and makes it read
//! once more. Wake-ups come from this replica's own commits (`published`) and, on
//! PostgreSQL, from the listener (`checkout_feed` notifications, which every replica sends
//! after its commits: see `FeedHub::published`); after a listener reconnect every feed is
//! woken, so nothing committed while it was down waits for long.
//!
//! Shared reads: the watchers of a feed that are caught up all stand at the same position,
//! and one wake-up sends them all to read the same page (and then, at the position after it,
//! to find nothing more). So each entry keeps the latest [`TailRead`]s, one per position: a
//! watcher at that position joins it instead of reading by itself (one read and one build of
//! the events per wake-up, not one per watcher). A watcher may join only a read that started
//! after the last wake-up it saw: wake-ups are numbered, a read is stamped with the number
//! current when it was set up, and a wake-up is sent after its commit, so such a read sees
//! everything that woke the watcher. The reads kept are few (`TAIL_READS`) and dropped as
//! soon as a newer wake-up makes them useless, so a page is held only while it is shared.
use crate::{
    domain::feed::{EventKind, Position},
    pb,
};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};
use tokio::sync::{mpsc, watch, OnceCell};

type Key = (String, String);

/// Shared reads kept per feed: the caught-up position and the one after its last page,
/// with room for watchers that are a little behind.
const TAIL_READS: usize = 8;

/// One event of a shared page, built once for every watcher that joins the read.
pub struct SharedEvent {
    pub position: Position,
    pub kind: EventKind,
    pub event: pb::Event,
}

/// A page as watchers share it.
#[derive(Clone)]
pub struct SharedPage {
    pub events: Arc<[SharedEvent]>,
    /// Events committed beyond what the read could see yet (db::feed::Page::held_back).
    pub held_back: bool,
}

/// The page after `after`, read once for every watcher at that position.
pub struct TailRead {
    pub after: Position,
    /// The wake-up number current when this read was set up (it starts later).
    generation: u64,
    /// `None`: the read failed (each watcher then reads by itself, to get its own error).
    pub page: OnceCell<Option<SharedPage>>,
}

/// How soon watchers look again after a read found events held back (db::feed): the
/// transactions holding them back are usually a few milliseconds from their commit.
const HELD_BACK_RETRY: Duration = Duration::from_millis(5);
const HELD_BACK_DOUBLINGS: u32 = 8;

/// A cross-replica announcement: one feed, or all of them (`None`).
pub type Announcement = Option<(String, String)>;

struct Entry {
    /// The wake-up number; each wake-up adds one.
    wake: watch::Sender<u64>,
    tail: Tail,
    /// Reads in a row that found events held back (for the retry's backoff).
    held: Arc<AtomicU32>,
}

type Tail = Arc<Mutex<HashMap<Position, Arc<TailRead>>>>;

#[derive(Default)]
pub struct FeedHub {
    feeds: Mutex<HashMap<Key, Entry>>,
    /// PostgreSQL: the announcer of this replica's commits to the others (workers.rs), and
    /// the id its announcements carry, so that this replica's listener skips its own.
    announcer: OnceLock<(u64, mpsc::UnboundedSender<Announcement>)>,
}

/// A watcher's interest in one feed; dropping it unsubscribes.
pub struct FeedSubscription {
    hub: Arc<FeedHub>,
    key: Key,
    rx: Option<watch::Receiver<u64>>,
    tail: Tail,
    held: Arc<AtomicU32>,
}

impl FeedSubscription {
    /// Marks every wake-up so far as seen: call it before reading the feed, so that a
    /// commit after the read still wakes `woken`. Returns the wake-up number seen.
    pub fn seen(&mut self) -> u64 {
        self.rx.as_mut().map_or(0, |rx| *rx.borrow_and_update())
    }

    /// The shared read after `after` that started after wake-up `seen` (see the module
    /// docs): the one in progress or done if it qualifies, else a new one.
    pub fn tail_read(&self, after: Position, seen: u64) -> Arc<TailRead> {
        let mut tail = self.tail.lock().expect("feed tail lock");
        if let Some(t) = tail.get(&after).filter(|t| t.generation >= seen) {
            return t.clone();
        }
        // Taken under the tail lock, before the read starts: the read sees every commit
        // whose wake-up this number counts.
        let generation = self.rx.as_ref().map_or(0, |rx| *rx.borrow());
        let t = Arc::new(TailRead {
            after,
            generation,
            page: OnceCell::new(),
        });
        // Reads stamped before a later wake-up can be joined by no one who saw it.
        tail.retain(|_, t| t.generation >= generation);
        if tail.len() >= TAIL_READS {
            if let Some(&lowest) = tail.keys().min() {
                tail.remove(&lowest);
            }
        }
        tail.insert(after, t.clone());
        t
    }

    /// After a read of this feed: if it found events held back, wakes this feed's watchers
    /// again shortly, so they read again together (one shared read, as for any wake-up),
    /// backing off while they stay held back (a long transaction): 5 ms, doubling up to
    /// about a second. A read with nothing held back resets the backoff.
    pub fn read_done(&self, held_back: bool) {
        if !held_back {
            self.held.store(0, Ordering::Relaxed);
            return;
        }
        let streak = self
            .held
            .fetch_add(1, Ordering::Relaxed)
            .min(HELD_BACK_DOUBLINGS);
        let delay = HELD_BACK_RETRY * (1 << streak);
        let (hub, (store, env)) = (self.hub.clone(), self.key.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            hub.wake(&store, &env);
        });
    }

    /// Waits for a wake-up not yet seen.
    pub async fn woken(&mut self) {
        let rx = self.rx.as_mut().expect("live subscription");
        if rx.changed().await.is_err() {
            // The sender lives as long as the entry, which lives as long as its receivers.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for FeedSubscription {
    fn drop(&mut self) {
        // Under the lock, so that the count reaches zero and the entry leaves in one step.
        let mut feeds = self.hub.feeds.lock().expect("feed hub lock");
        drop(self.rx.take());
        if feeds
            .get(&self.key)
            .is_some_and(|e| e.wake.receiver_count() == 0)
        {
            feeds.remove(&self.key);
        }
    }
}

impl FeedHub {
    pub fn subscribe(self: &Arc<Self>, store: &str, env: &str) -> FeedSubscription {
        let key = (store.to_owned(), env.to_owned());
        let mut feeds = self.feeds.lock().expect("feed hub lock");
        let entry = feeds.entry(key.clone()).or_insert_with(|| Entry {
            wake: watch::channel(0).0,
            tail: Arc::default(),
            held: Arc::default(),
        });
        FeedSubscription {
            hub: self.clone(),
            key,
            rx: Some(entry.wake.subscribe()),
            tail: entry.tail.clone(),
            held: entry.held.clone(),
        }
    }

    /// Sends this replica's announcements to `announcer` (PostgreSQL, once at startup);
    /// returns the id they carry.
    pub fn announce_to(&self, announcer: mpsc::UnboundedSender<Announcement>) -> u64 {
        self.announcer.get_or_init(|| (rand::random(), announcer)).0
    }

    /// A notification this replica's announcer sent: its watchers were woken at the commit.
    pub fn is_own(&self, announcer_id: u64) -> bool {
        self.announcer
            .get()
            .is_some_and(|(id, _)| *id == announcer_id)
    }

    /// This replica committed events of this feed: its watchers here are woken now, and
    /// those of other replicas by a notification sent after the commit. (Not by a NOTIFY
    /// in the writing transaction: PostgreSQL serializes the commits of every transaction
    /// that notifies, through one lock held until the commit is flushed.)
    pub fn published(&self, store: &str, env: &str) {
        self.wake(store, env);
        if let Some((_, a)) = self.announcer.get() {
            let _ = a.send(Some((store.to_owned(), env.to_owned())));
        }
    }

    /// This replica committed events of many feeds (a sweep).
    pub fn published_all(&self) {
        self.wake_all();
        if let Some((_, a)) = self.announcer.get() {
            let _ = a.send(None);
        }
    }

    /// This feed committed something (or may have).
    pub fn wake(&self, store: &str, env: &str) {
        let feeds = self.feeds.lock().expect("feed hub lock");
        if let Some(e) = feeds.get(&(store.to_owned(), env.to_owned())) {
            e.wake.send_modify(|n| *n += 1);
        }
    }

    /// Every feed may have changed (a reconnected listener, a sweep over many stores).
    pub fn wake_all(&self) {
        for e in self.feeds.lock().expect("feed hub lock").values() {
            e.wake.send_modify(|n| *n += 1);
        }
    }

    /// Feeds watched right now (entries, not streams).
    pub fn watched(&self) -> usize {
        self.feeds.lock().expect("feed hub lock").len()
    }
}
