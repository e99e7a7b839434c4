//! Session change notifications inside one replica. A notification carries only "session X
//! changed"; watchers re-read the session, so a burst of changes, a slow watcher or a
//! notification lost while the Postgres listener was reconnecting can delay an event but
//! never skip one: the next read shows the current state.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

#[derive(Default)]
pub struct Hub {
    // One channel per watched session: a watch channel keeps only the latest version, so a
    // watcher that falls behind is resynced rather than overflowed.
    sessions: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Woken on every session change: an ending may have put a webhook in the outbox.
    pub outbox: Arc<tokio::sync::Notify>,
}

/// A watcher's interest in one session; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: String,
    rx: Option<watch::Receiver<u64>>,
}

impl Subscription {
    /// Resolves when the session may have changed since the last call.
    pub async fn changed(&mut self) {
        let rx = self.rx.as_mut().expect("live subscription");
        if rx.changed().await.is_err() {
            // The hub never drops a sender with live receivers; wait forever rather than spin.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut sessions = self.hub.sessions.lock().expect("hub lock");
        if sessions
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            sessions.remove(&self.id);
        }
    }
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Subscribe before reading the session, so no change can slip between the two.
    pub fn subscribe(self: &Arc<Self>, id: &str) -> Subscription {
        let mut sessions = self.sessions.lock().expect("hub lock");
        let rx = sessions
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            id: id.to_owned(),
            rx: Some(rx),
        }
    }

    pub fn notify(&self, id: &str) {
        self.outbox.notify_one();
        if let Some(tx) = self.sessions.lock().expect("hub lock").get(id) {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Every watcher re-reads: after the listener reconnected, anything may have changed.
    pub fn notify_all(&self) {
        for tx in self.sessions.lock().expect("hub lock").values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    pub fn watched(&self) -> usize {
        self.sessions.lock().expect("hub lock").len()
    }
}
