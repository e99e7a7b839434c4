//! The WatchSession stream. The subscription is taken before the handler's own read, which
//! gives the first event; after that the stream follows the snapshots the hub publishes
//! for the session (src/events.rs: one read per change, shared by every watcher) and sends
//! one event per status change, ending after a terminal one.
//!
//! There is no task or channel per stream: the response stream itself waits on the hub's
//! `watch` channel, which also carries shutdown (`Hub::close`), so an idle stream is a few
//! hundred bytes, one waiter and no timer.
//! The event for a snapshot is built once per audience and previous status and shared, so
//! fanning one ending out to thousands of watchers is a clone and an encode each.
use super::session_pb::{status_to_pb, Audience, SessionView};
use crate::{
    db::sessions::StoredSession,
    domain::{session_state::Status, time::Timestamp},
    error::AppResult,
    events::{Snapshot, Subscription},
    grpc::{convert, session_pb::effective_status},
    metrics::Metrics,
    pb,
};
use std::{
    pin::Pin,
    sync::{Arc, Mutex},
};
use tokio_stream::Stream;
use tonic::Status as GrpcStatus;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::SessionEvent, GrpcStatus>> + Send>>;
type Item = Result<pb::SessionEvent, GrpcStatus>;

pub struct Watcher {
    pub view: Arc<SessionView>,
    pub audience: Audience,
    pub subscription: Subscription,
    pub metrics: Arc<Metrics>,
}

/// Counts an open stream for as long as the stream exists.
struct OpenStream(Arc<Metrics>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.watch_closed();
    }
}

/// The events made from one snapshot, by (audience, previous status); the previous status
/// is OPEN for every live watcher in practice, so this holds one or two events.
#[derive(Default)]
pub struct EventCache(Mutex<Vec<(Audience, Status, Arc<Item>)>>);

impl EventCache {
    fn get(
        &self,
        snapshot: &Snapshot,
        view: &SessionView,
        audience: Audience,
        previous: Status,
    ) -> Item {
        let shared = {
            let mut built = self.0.lock().expect("event cache lock");
            match built
                .iter()
                .find(|(a, p, _)| (*a, *p) == (audience, previous))
            {
                Some((_, _, event)) => event.clone(),
                None => {
                    // Built under the lock: the watchers woken together wait for this one
                    // conversion instead of each doing it.
                    let event = match &snapshot.stored {
                        Some(stored) => {
                            // StoredSession is not Clone (src/db is not ours to change).
                            let stored = StoredSession {
                                session: stored.session.clone(),
                                lines: stored.lines.clone(),
                            };
                            let event =
                                event(view, stored, audience, Some(previous), snapshot.read_at);
                            Arc::new(event.map_err(GrpcStatus::from))
                        }
                        None => Arc::new(Err(not_found())),
                    };
                    built.push((audience, previous, event.clone()));
                    event
                }
            }
        };
        (*shared).clone()
    }
}

fn not_found() -> GrpcStatus {
    GrpcStatus::not_found("Session not found")
}

/// The event for a session as read at `now`: the first one (no previous status) is the
/// state as of now; a change happened when it was written.
fn event(
    view: &SessionView,
    stored: StoredSession,
    audience: Audience,
    previous: Option<Status>,
    now: Timestamp,
) -> AppResult<pb::SessionEvent> {
    let occurred_at = match previous {
        None => now.0,
        Some(_) => stored.session.ended_at.unwrap_or(now.0),
    };
    Ok(pb::SessionEvent {
        session: Some(view.session(stored, audience, now)?),
        previous_status: previous.map_or(pb::SessionStatus::Unspecified, status_to_pb) as i32,
        occurred_at: Some(convert::timestamp(occurred_at)),
    })
}

struct State {
    watcher: Watcher,
    first: Option<Item>,
    /// The status last sent; `None` once the stream is over.
    last: Option<Status>,
    _open: OpenStream,
}

/// The stream for a watcher whose subscription was taken before `first` was read.
pub fn watch_stream(watcher: Watcher, first: StoredSession) -> WatchStream {
    watcher.metrics.watch_opened();
    let open = OpenStream(watcher.metrics.clone());
    let now = Timestamp::now();
    let expires_at = first.session.expires_at;
    let (first, last) = match effective_status(&first.session.status, expires_at, now) {
        Ok(status) => {
            if status == Status::Open {
                watcher.subscription.expires_at(expires_at);
            }
            match event(&watcher.view, first, watcher.audience, None, now) {
                Ok(event) => (Ok(event), Some(status).filter(|s| !s.is_terminal())),
                Err(e) => (Err(e.into()), None),
            }
        }
        Err(e) => (Err(e.into()), None),
    };
    let state = State {
        watcher,
        first: Some(first),
        last,
        _open: open,
    };
    Box::pin(futures_util::stream::unfold(state, next))
}

async fn next(mut state: State) -> Option<(Item, State)> {
    if let Some(first) = state.first.take() {
        return Some((first, state));
    }
    let last = state.last?;
    let w = &mut state.watcher;
    let (item, status) = loop {
        let Some(snapshot) = w.subscription.changed().await else {
            let status = GrpcStatus::unavailable(
                "server is shutting down; watch again to reach another replica",
            );
            break (Err(status), None);
        };
        match snapshot.status() {
            Ok(Some(status)) if status == last => continue,
            Ok(Some(status)) => {
                let event = snapshot.events.get(&snapshot, &w.view, w.audience, last);
                break (event, Some(status));
            }
            Ok(None) => break (Err(not_found()), None),
            Err(e) => break (Err(e.into()), None),
        }
    };
    state.last = match (&item, status) {
        (Ok(_), Some(status)) if !status.is_terminal() => Some(status),
        _ => None,
    };
    Some((item, state))
}
