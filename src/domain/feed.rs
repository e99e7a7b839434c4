//! The event feed's rules (SPEC §11): what an event is, and the cursor clients resume from.
//!
//! A cursor names one position in one store's and environment's feed. It is opaque to
//! clients (base64url of `ev1:<store>:<environment>:<position>`, the position written `seq`
//! or `tx.seq`) and carries its store and environment, so a cursor of another store or
//! environment is refused as `Invalid cursor` instead of being read as a position of the
//! caller's feed.
use super::{ids::StoreId, Environment, Invalid};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

/// What happened to a session. Each transition writes exactly one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Created,
    Completed,
    Cancelled,
    Expired,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Created,
        EventKind::Completed,
        EventKind::Cancelled,
        EventKind::Expired,
    ];

    /// The spelling stored in `feed_events.event_type` (and printed by `checkout events`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "session.created",
            EventKind::Completed => "session.completed",
            EventKind::Cancelled => "session.cancelled",
            EventKind::Expired => "session.expired",
        }
    }

    pub fn from_db(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

const VERSION: &str = "ev1";
pub const INVALID_CURSOR: &str = "Invalid cursor";
pub const CURSOR_EXPIRED: &str = "Cursor expired";
/// `google.rpc.ErrorInfo` reason of `Cursor expired`.
pub const CURSOR_EXPIRED_REASON: &str = "CURSOR_EXPIRED";

/// Where an event stands in its feed: events are read in (tx, seq) order. On PostgreSQL
/// `tx` is the id of the transaction that wrote the event and `seq` a sequence number (see
/// db::feed for why that order is safe to read in); on SQLite, and for PostgreSQL events
/// written before positions had two parts, `tx` is 0 and `seq` the store's counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub tx: i64,
    pub seq: i64,
}

impl Position {
    pub const START: Position = Position { tx: 0, seq: 0 };

    fn parse(text: &str) -> Option<Position> {
        let (tx, seq) = match text.split_once('.') {
            Some((tx, seq)) => (tx.parse::<i64>().ok().filter(|&t| t > 0)?, seq),
            None => (0, text),
        };
        let p = Position {
            tx,
            seq: seq.parse::<i64>().ok().filter(|&s| s >= 0)?,
        };
        // One spelling per position: no signs, leading zeros or spaces.
        (p.to_string() == text).then_some(p)
    }
}

impl std::fmt::Display for Position {
    /// `seq` alone when `tx` is 0, so cursors handed out before positions had two parts
    /// are still the same strings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tx {
            0 => write!(f, "{}", self.seq),
            tx => write!(f, "{tx}.{}", self.seq),
        }
    }
}

/// The position after which a reader continues.
pub fn encode_cursor(store: &StoreId, env: Environment, position: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{VERSION}:{store}:{env}:{position}",
        store = store.as_str()
    ))
}

/// The position a client's cursor names in the caller's feed; `None` for an empty cursor.
/// Malformed, another store's or another environment's: `Invalid cursor`.
pub fn decode_cursor(
    field: &str,
    cursor: &str,
    store: &StoreId,
    env: Environment,
) -> Result<Option<Position>, Invalid> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let invalid = || Invalid::field(field, INVALID_CURSOR);
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    // Store ids never contain ':'; splitting from the right keeps this true even if one did.
    let mut parts = text.rsplitn(3, ':');
    let (Some(position), Some(environment), Some(rest)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let scope_matches = rest.strip_prefix(VERSION).and_then(|r| r.strip_prefix(':'))
        == Some(store.as_str())
        && environment == env.as_str();
    match Position::parse(position) {
        Some(p) if scope_matches => Ok(Some(p)),
        _ => Err(invalid()),
    }
}
