//! A short-lived cache of what authentication reads from the database: the API key (by the
//! hash of its secret) or the store (by its publishable slug). Without it every call paid a
//! database round trip before its handler ran.
//!
//! Freshness, which matters more than speed for credentials:
//! * Changes made through this process (AdminService, `checkout admin`) clear the cache
//!   before they answer.
//! * On PostgreSQL a trigger announces every change of `api_keys` or `stores` on the channel
//!   `checkout_auth_changes`; every replica's listener clears its cache when it hears one,
//!   and after it (re)connects, since it may have missed some meanwhile.
//! * Whatever slips past both (a listener still reconnecting, another process writing a
//!   SQLite file) lives at most `TTL`.
//!
//! A generation number closes the remaining race: a lookup that started before a clear
//! must not put what it read (possibly the old row) back into the cache after the clear.
use crate::db::{api_keys::ApiKeyRow, stores::StoreRow};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// The longest a credential change can go unseen by this replica.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; past it the cache starts over (only valid credentials are cached,
/// so this is a bound on memory, not something a caller can exploit).
const CAPACITY: usize = 10_000;

/// When it was read, the key, and its store.
type CachedKey = (Instant, Arc<ApiKeyRow>, Arc<StoreRow>);

#[derive(Default)]
pub struct AuthCache {
    generation: AtomicU64,
    keys: Mutex<HashMap<String, CachedKey>>,
    slugs: Mutex<HashMap<String, (Instant, Arc<StoreRow>)>>,
}

/// Taken before a database read; the result may be cached only if nothing was cleared since.
#[derive(Clone, Copy)]
pub struct Generation(u64);

fn fresh(at: &Instant) -> bool {
    at.elapsed() < TTL
}

impl AuthCache {
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Forgets everything: a key or store changed somewhere.
    pub fn clear(&self) {
        // Bump first: a lookup finishing between the two steps must not insert.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.keys.lock().expect("auth cache lock").clear();
        self.slugs.lock().expect("auth cache lock").clear();
    }

    /// Inserts unless the cache was cleared since `since`. The check is made under the map's
    /// lock, which `clear` takes after bumping the generation, so either the check fails or
    /// the clear removes the entry.
    fn insert<V>(&self, map: &Mutex<HashMap<String, V>>, since: Generation, key: &str, value: V) {
        let mut map = map.lock().expect("auth cache lock");
        if self.generation.load(Ordering::Acquire) != since.0 {
            return;
        }
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key.to_owned(), value);
    }

    pub fn key(&self, secret_hash: &str) -> Option<(Arc<ApiKeyRow>, Arc<StoreRow>)> {
        let keys = self.keys.lock().expect("auth cache lock");
        let (at, key, store) = keys.get(secret_hash)?;
        fresh(at).then(|| (key.clone(), store.clone()))
    }

    pub fn put_key(&self, since: Generation, key: &Arc<ApiKeyRow>, store: &Arc<StoreRow>) {
        let value = (Instant::now(), key.clone(), store.clone());
        self.insert(&self.keys, since, &key.secret_hash, value);
    }

    pub fn slug(&self, slug: &str) -> Option<Arc<StoreRow>> {
        let slugs = self.slugs.lock().expect("auth cache lock");
        let (at, store) = slugs.get(slug)?;
        fresh(at).then(|| store.clone())
    }

    pub fn put_slug(&self, since: Generation, slug: &str, store: &Arc<StoreRow>) {
        self.insert(&self.slugs, since, slug, (Instant::now(), store.clone()));
    }
}
