//! Timestamps are microseconds since the Unix epoch (UTC) everywhere below the gRPC layer,
//! which is also how both databases store them.
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("system clock before 1970");
        Timestamp(i64::try_from(d.as_micros()).expect("clock beyond year 292277"))
    }

    pub fn from_seconds_nanos(seconds: i64, nanos: i32) -> Option<Self> {
        seconds
            .checked_mul(1_000_000)?
            .checked_add(i64::from(nanos) / 1_000)
            .map(Timestamp)
    }

    pub fn seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn subsec_nanos(self) -> i32 {
        // < 1_000_000 µs, so the product fits an i32.
        (self.0.rem_euclid(1_000_000) * 1_000) as i32
    }
}
