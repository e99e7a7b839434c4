//! Failed authentications per peer address: a token bucket per address, charged only when a
//! call fails with UNAUTHENTICATED. When a peer's bucket is empty its failing calls get
//! RESOURCE_EXHAUSTED with RetryInfo instead.
//!
//! Calls are still authenticated first: a valid key is never refused or slowed, even from an
//! address that is over its limit (many clients can share one NAT address). Guessing a key
//! is hopeless anyway (256 random bits); the limit tells a misbehaving or hostile client to
//! back off, and keeps its noise bounded.
//!
//! IPv6 peers are counted per /64, the block one host usually controls. The map is bounded:
//! idle peers (full again) are forgotten first, then the least limited ones.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Peers remembered at most (a few MB).
const MAX_PEERS: usize = 65_536;

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Refused since its last allowed failure; logs once per episode.
    limited: bool,
}

pub struct AuthFailureLimiter {
    per_second: f64,
    burst: f64,
    peers: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AuthFailureLimiter {
    /// `per_minute == 0` turns limiting off.
    pub fn new(per_minute: u32, burst: u32) -> AuthFailureLimiter {
        AuthFailureLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one failed authentication from `peer`; past the limit, how long until the
    /// next one would be allowed.
    pub fn charge(&self, peer: IpAddr) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let key = block_of(peer);
        let now = Instant::now();
        let mut peers = self.peers.lock().expect("auth failure lock");
        if peers.len() >= MAX_PEERS && !peers.contains_key(&key) {
            self.evict(&mut peers, now);
        }
        let bucket = peers.entry(key).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
            limited: false,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.limited = false;
            return Ok(());
        }
        if !std::mem::replace(&mut bucket.limited, true) {
            tracing::warn!(peer = %key, "too many failed authentications; refusing them for a while");
        }
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) / self.per_second,
        ))
    }

    /// Makes room: peers whose bucket has refilled are forgotten (a fresh bucket is the
    /// same), and if that is not enough, the half with the most tokens left.
    fn evict(&self, peers: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.per_second);
        peers.retain(|_, b| now.duration_since(b.refilled) < full_after);
        if peers.len() >= MAX_PEERS {
            let mut tokens: Vec<f64> = peers.values().map(|b| b.tokens).collect();
            let middle = tokens.len() / 2;
            let (_, median, _) = tokens.select_nth_unstable_by(middle, f64::total_cmp);
            let median = *median;
            peers.retain(|_, b| b.tokens < median);
            if peers.len() >= MAX_PEERS {
                peers.clear();
            }
        }
    }
}

/// The address a limit applies to: IPv4 as is, IPv6 by its /64 prefix.
fn block_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(block_of(a), block_of(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(block_of(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = AuthFailureLimiter::new(1, 2);
        for i in 0..(MAX_PEERS as u32 + 10) {
            let _ = limiter.charge(IpAddr::V4(i.into()));
        }
        assert!(limiter.peers.lock().unwrap().len() <= MAX_PEERS);
    }
}
