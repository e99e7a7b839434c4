//! Wake-ups for event feed watchers, inside one replica (the events themselves are always
//! read from the database: see `grpc::feed`).
//!
//! One entry per (store, environment) that has watchers, however many. A wake-up carries
//! no event, only "this feed may have grown": each watcher then reads what is after its own
//! position. So live delivery and replay are the same read, a slow watcher costs no buffer
//! here (it reads later, from the database), and a wake-up that arrives while a watcher is
//! reading is kept (a `watch` channel remembers "changed since last seen") and makes it read
//! once more. Wake-ups come from this replica's own commits and, on PostgreSQL, from the
//! listener (`checkout_feed` notifications from every replica); after a listener reconnect
//! every feed is woken, so nothing committed while it was down waits for long.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

type Key = (String, String);

#[derive(Default)]
pub struct FeedHub {
    feeds: Mutex<HashMap<Key, watch::Sender<()>>>,
}

/// A watcher's interest in one feed; dropping it unsubscribes.
pub struct FeedSubscription {
    hub: Arc<FeedHub>,
    key: Key,
    rx: Option<watch::Receiver<()>>,
}

impl FeedSubscription {
    /// Marks every wake-up so far as seen: call it before reading the feed, so that a
    /// commit after the read still wakes `woken`.
    pub fn seen(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            rx.borrow_and_update();
        }
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
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            feeds.remove(&self.key);
        }
    }
}

impl FeedHub {
    pub fn subscribe(self: &Arc<Self>, store: &str, env: &str) -> FeedSubscription {
        let key = (store.to_owned(), env.to_owned());
        let rx = self
            .feeds
            .lock()
            .expect("feed hub lock")
            .entry(key.clone())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        FeedSubscription {
            hub: self.clone(),
            key,
            rx: Some(rx),
        }
    }

    /// This feed committed something (or may have).
    pub fn wake(&self, store: &str, env: &str) {
        let feeds = self.feeds.lock().expect("feed hub lock");
        if let Some(tx) = feeds.get(&(store.to_owned(), env.to_owned())) {
            tx.send_replace(());
        }
    }

    /// Every feed may have changed (a reconnected listener, a sweep over many stores).
    pub fn wake_all(&self) {
        for tx in self.feeds.lock().expect("feed hub lock").values() {
            tx.send_replace(());
        }
    }

    /// Feeds watched right now (entries, not streams).
    pub fn watched(&self) -> usize {
        self.feeds.lock().expect("feed hub lock").len()
    }
}
