//! The session state machine. A session starts OPEN and ends exactly once: COMPLETED (an
//! order exists), CANCELLED or EXPIRED. Every transition in the database is a conditional
//! UPDATE from `open`, so of any set of racing transitions exactly one takes effect.
use super::time::Timestamp;

/// A payment or a cancel must land at least this long before `expires_at`. Readers report
/// EXPIRED from `expires_at` on; without the margin a transaction that checked the clock a
/// moment earlier (or on a replica whose clock is a little behind) could still commit
/// COMPLETED after a watcher was told EXPIRED. Two endings for one session is the one thing
/// this service must never do.
pub const ENDING_MARGIN_MICROS: i64 = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Open,
    Completed,
    Cancelled,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    pub fn from_db(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "completed" => Some(Status::Completed),
            "cancelled" => Some(Status::Cancelled),
            "expired" => Some(Status::Expired),
            _ => None,
        }
    }

    /// The status as clients see it: past its expiry an open session is EXPIRED, whether
    /// or not the sweeper has written that yet.
    pub fn effective(stored: Status, expires_at: i64, now: Timestamp) -> Status {
        if stored == Status::Open && expires_at <= now.0 {
            Status::Expired
        } else {
            stored
        }
    }

    pub fn is_terminal(self) -> bool {
        self != Status::Open
    }

    /// The word used in messages ("Completed", "Cancelled", …).
    pub fn word(self) -> &'static str {
        match self {
            Status::Open => "Open",
            Status::Completed => "Completed",
            Status::Cancelled => "Cancelled",
            Status::Expired => "Expired",
        }
    }
}

/// Why a transition did not happen, for FAILED_PRECONDITION.
pub fn already_ended(status: Status) -> String {
    match status {
        Status::Completed => "Session is already completed".into(),
        Status::Cancelled => "Session is cancelled".into(),
        Status::Expired => "Session has expired".into(),
        Status::Open => "Session is open".into(),
    }
}
