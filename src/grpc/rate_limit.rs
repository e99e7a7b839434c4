//! Per-caller token buckets: each API key (and each store's publishable slug) has its own,
//! so one noisy key never starves another. Buckets live in each replica; with N replicas
//! behind a balancer a key gets up to N times the rate.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_second == 0` turns limiting off.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether calls are limited at all (`per_second > 0`).
    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    /// Takes a token for `caller`, or says how long until one is available.
    pub fn take(&self, caller: &str) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        // Keys that went quiet are forgotten, so the map stays as small as the active set.
        if buckets.len() > 100_000 {
            let full_after = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, b| now.duration_since(b.refilled) < full_after);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn buckets_are_per_caller() {
        let limiter = super::RateLimiter::new(1.0, 2);
        assert!(limiter.take("a").is_ok() && limiter.take("a").is_ok());
        let wait = limiter.take("a").unwrap_err();
        assert!(wait.as_millis() > 900);
        assert!(limiter.take("b").is_ok(), "another key is unaffected");
    }
}
