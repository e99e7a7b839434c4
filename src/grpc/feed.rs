//! ListEvents and WatchEvents (SPEC §11): a store's event feed, read by position.
//!
//! Both read the same way: the events after a position, from the database, a page at a
//! time (`db::feed::read_after`). A WatchEvents stream keeps its own position and, when
//! its feed is woken (src/feed.rs) or on a slow safety timer, reads what is after it. So
//! replay and live delivery are one loop with no switch-over to get wrong: no event twice,
//! none skipped. The stream holds at most one page; a slow consumer is simply read for
//! later, from the database, and costs the server no more memory than a fast one. Streams
//! at the same position share one read and one build of its page (src/feed.rs, `TailRead`):
//! a new event costs one read however many streams are caught up.
use super::{
    convert,
    session_pb::{Audience, SessionView},
};
use crate::{
    db::{
        feed::{self, FeedEvent, Page, Read},
        Db,
    },
    domain::{
        feed::{
            decode_cursor, encode_cursor, EventKind, Position, CURSOR_EXPIRED,
            CURSOR_EXPIRED_REASON, INVALID_CURSOR,
        },
        ids::StoreId,
        time::Timestamp,
        Environment, Invalid,
    },
    error::{AppError, AppResult},
    feed::{FeedHub, FeedSubscription, SharedEvent, SharedPage},
    pb,
};
use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::Status as GrpcStatus;

/// Events a stream reads (and holds) at a time.
const WATCH_PAGE: i64 = 100;
/// A safety net only: wake-ups are how new events are noticed, but a stream also reads
/// this often by itself, so a lost wake-up can delay an event, never lose it.
const SAFETY_POLL: Duration = Duration::from_secs(30);

/// ListEvents waits at most this many times this long for held-back events.
const LIST_SETTLE_TRIES: usize = 20;
const LIST_SETTLE_WAIT: Duration = Duration::from_millis(5);

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, GrpcStatus>> + Send>>;

/// ListEvents' `page_size`: 1 to 1000, 0 meaning 100.
fn page_size(raw: i32) -> Result<i64, Invalid> {
    match raw {
        0 => Ok(100),
        1..=1000 => Ok(i64::from(raw)),
        _ => Err(Invalid::field("page_size", "page_size must be 0 to 1000")),
    }
}

/// The `types` filter; UNSPECIFIED and unknown values are refused.
fn kinds(field: &str, raw: &[i32]) -> Result<Vec<EventKind>, Invalid> {
    let mut out = Vec::with_capacity(raw.len());
    for &t in raw {
        let kind = match pb::EventType::try_from(t) {
            Ok(pb::EventType::SessionCreated) => EventKind::Created,
            Ok(pb::EventType::SessionCompleted) => EventKind::Completed,
            Ok(pb::EventType::SessionCancelled) => EventKind::Cancelled,
            Ok(pb::EventType::SessionExpired) => EventKind::Expired,
            _ => return Err(Invalid::field(field, format!("Unknown event type {t}"))),
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

fn type_to_pb(kind: EventKind) -> pb::EventType {
    match kind {
        EventKind::Created => pb::EventType::SessionCreated,
        EventKind::Completed => pb::EventType::SessionCompleted,
        EventKind::Cancelled => pb::EventType::SessionCancelled,
        EventKind::Expired => pb::EventType::SessionExpired,
    }
}

fn expired() -> AppError {
    AppError::FailedPrecondition {
        message: CURSOR_EXPIRED.into(),
        info: Some((CURSOR_EXPIRED_REASON.into(), Vec::new())),
    }
}

/// One store's and environment's feed (the caller's) and how its events are shown.
pub struct Feed {
    pub db: Db,
    pub view: Arc<SessionView>,
    pub store_id: StoreId,
    pub environment: Environment,
}

impl Feed {
    fn event(&self, e: FeedEvent) -> AppResult<pb::Event> {
        let occurred_at = Timestamp(e.occurred_at);
        Ok(pb::Event {
            cursor: encode_cursor(&self.store_id, self.environment, e.position),
            r#type: type_to_pb(e.kind) as i32,
            session_id: e.stored.session.id.clone(),
            occurred_at: Some(convert::timestamp(e.occurred_at)),
            // As of the event: its time decides whether an open session reads as expired.
            session: Some(self.view.session(e.stored, Audience::Full, occurred_at)?),
        })
    }

    /// The events after `after`, as read; an unknown or purged position is an error.
    async fn read(
        &self,
        after: Option<Position>,
        kinds: &[EventKind],
        limit: i64,
    ) -> AppResult<Page> {
        let (store, env) = (&self.store_id, self.environment);
        match feed::read_after(&self.db, store, env, after, kinds, limit).await? {
            Read::Events(page) => Ok(page),
            Read::Unknown => Err(Invalid::field("after_cursor", INVALID_CURSOR).into()),
            Read::Expired => Err(expired()),
        }
    }

    /// The position a client's cursor names in this feed (`None`: empty cursor).
    pub fn position(&self, cursor: &str) -> AppResult<Option<Position>> {
        let (store, env) = (&self.store_id, self.environment);
        Ok(decode_cursor("after_cursor", cursor, store, env)?)
    }

    /// A stream's page after `after`, built once to be shared by the streams there.
    async fn shared_page(&self, after: Position) -> AppResult<SharedPage> {
        let page = self.read(Some(after), &[], WATCH_PAGE).await?;
        let events = page
            .events
            .into_iter()
            .map(|e| {
                let (position, kind) = (e.position, e.kind);
                let event = self.event(e)?;
                Ok(SharedEvent {
                    position,
                    kind,
                    event,
                })
            })
            .collect::<AppResult<_>>()?;
        Ok(SharedPage {
            events,
            held_back: page.held_back,
        })
    }

    /// Up to `limit` events after `after` (`None`: from the oldest retained), as sent.
    pub async fn page(&self, after: Option<Position>, limit: i64) -> AppResult<Vec<pb::Event>> {
        let page = self.read(after, &[], limit).await?;
        page.events.into_iter().map(|e| self.event(e)).collect()
    }

    pub async fn list(&self, r: pb::ListEventsRequest) -> AppResult<pb::ListEventsResponse> {
        let size = page_size(r.page_size)?;
        let kinds = kinds("types", &r.types)?;
        let after = self.position(&r.after_cursor)?;
        // Events held back by a transaction about to end (db::feed) are waited for a
        // little, so that a caller listing right after its own write finds it.
        let mut page = self.read(after, &kinds, size).await?;
        for _ in 0..LIST_SETTLE_TRIES {
            if !page.held_back || page.events.len() as i64 >= size {
                break;
            }
            tokio::time::sleep(LIST_SETTLE_WAIT).await;
            page = self.read(after, &kinds, size).await?;
        }
        let events = page.events;
        let next_cursor = match events.last() {
            Some(e) => encode_cursor(&self.store_id, self.environment, e.position),
            None => r.after_cursor,
        };
        let events = events
            .into_iter()
            .map(|e| self.event(e))
            .collect::<AppResult<_>>()?;
        Ok(pb::ListEventsResponse {
            events,
            next_cursor,
        })
    }

    /// Validates the request and takes the stream's starting point before the response
    /// starts, so a bad or expired cursor is the call's error, not a stream message.
    pub async fn watch(
        self,
        r: pb::WatchEventsRequest,
        hub: &Arc<FeedHub>,
        shutdown: watch::Receiver<bool>,
    ) -> AppResult<EventStream> {
        let kinds = kinds("types", &r.types)?;
        // Subscribed before the first read: a commit after it wakes the stream.
        let mut subscription = hub.subscribe(self.store_id.as_str(), self.environment.as_str());
        subscription.seen();
        let mut state = Watch {
            last: Position::START,
            kinds,
            buffer: VecDeque::new(),
            subscription,
            shutdown,
            feed: self,
        };
        match state.feed.position(&r.after_cursor)? {
            // "Now": anything committing later is after it.
            None => {
                let f = &state.feed;
                state.last = feed::now(&f.db, &f.store_id, f.environment).await?;
            }
            Some(after) => {
                state.last = after;
                state.fill(false).await?;
            }
        }
        let stream =
            futures_util::stream::unfold(Some(state), |state| async move { state?.next().await });
        Ok(Box::pin(stream))
    }
}

/// Streams end with this on shutdown, as WatchSession's do: the client resumes elsewhere.
fn shutting_down() -> GrpcStatus {
    GrpcStatus::unavailable("server is shutting down; watch again to reach another replica")
}

struct Watch {
    feed: Feed,
    /// The position of the last event read (sent, or held in `buffer`).
    last: Position,
    /// Empty: every type. The filter is applied after reading, so `last` passes over
    /// events of other types and no read scans them twice.
    kinds: Vec<EventKind>,
    buffer: VecDeque<pb::Event>,
    subscription: FeedSubscription,
    shutdown: watch::Receiver<bool>,
}

impl Watch {
    /// Reads the next page after `last` into the buffer; `false` if there was nothing.
    /// The read is shared with the other streams at `last` unless `own` (the safety poll,
    /// which must not be answered by a read from before a lost wake-up).
    async fn fill(&mut self, own: bool) -> AppResult<bool> {
        let seen = self.subscription.seen();
        let shared = match own {
            true => None,
            false => {
                let tail = self.subscription.tail_read(self.last, seen);
                let (feed, subscription) = (&self.feed, &self.subscription);
                let page = tail.page.get_or_init(|| async {
                    // A failed shared read: each stream reads by itself, for its own error.
                    let page = feed.shared_page(tail.after).await.ok();
                    // Once per shared read, not once per stream that joins it.
                    if let Some(p) = &page {
                        subscription.read_done(p.held_back);
                    }
                    page
                });
                page.await.clone()
            }
        };
        let page = match shared {
            Some(page) => page,
            None => {
                let page = self.feed.shared_page(self.last).await?;
                self.subscription.read_done(page.held_back);
                page
            }
        };
        let Some(last) = page.events.last().map(|e| e.position) else {
            return Ok(false);
        };
        self.last = last;
        let kinds = &self.kinds;
        self.buffer.extend(
            page.events
                .iter()
                .filter(|e| kinds.is_empty() || kinds.contains(&e.kind))
                .map(|e| e.event.clone()),
        );
        Ok(true)
    }

    /// The next event, and the state after it (`None`: the stream ends after this item).
    async fn next(mut self) -> Option<(Result<pb::Event, GrpcStatus>, Option<Watch>)> {
        let mut own = false;
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some((Ok(event), Some(self)));
            }
            if *self.shutdown.borrow() {
                return Some((Err(shutting_down()), None));
            }
            match self.fill(std::mem::take(&mut own)).await {
                Ok(true) => continue,
                Ok(false) => {}
                // The stream ends with the error; the client resumes from its last cursor.
                Err(e) => return Some((Err(e.into()), None)),
            }
            tokio::select! {
                _ = self.subscription.woken() => {}
                _ = tokio::time::sleep(SAFETY_POLL) => own = true,
                _ = self.shutdown.wait_for(|stopping| *stopping) => {
                    return Some((Err(shutting_down()), None));
                }
            }
        }
    }
}
