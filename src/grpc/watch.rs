//! The WatchSession loop. The subscription is taken before the first read; after that the
//! watcher re-reads the session whenever it may have changed (a notification from this or
//! another replica, its expiry time, or a periodic resync) and sends one event per status
//! change, ending after a terminal one. Re-reading instead of trusting notification
//! contents is what makes a lost or coalesced notification harmless.
use super::session_pb::{effective_status, status_to_pb, Audience, SessionView};
use crate::{
    db::{self, sessions::StoredSession, Db},
    domain::{ids::SessionId, session_state::Status, time::Timestamp},
    error::AppError,
    events::Subscription,
    grpc::{auth::Merchant, convert},
    pb,
};
use std::{pin::Pin, sync::Arc, time::Duration};
use tokio::sync::{mpsc, watch};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::Status as GrpcStatus;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::SessionEvent, GrpcStatus>> + Send>>;

/// A safety net under the notifications; they are the fast path.
const RESYNC_EVERY: Duration = Duration::from_secs(10);

pub struct Watcher {
    pub db: Db,
    pub view: Arc<SessionView>,
    pub caller: Merchant,
    pub id: SessionId,
    pub subscription: Subscription,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Counts an open stream for as long as its task lives.
struct OpenStream(Arc<crate::metrics::Metrics>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.watch_closed();
    }
}

pub fn watch_stream(watcher: Watcher, first: StoredSession) -> WatchStream {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(watcher.run(first, tx));
    Box::pin(ReceiverStream::new(rx))
}

type Sender = mpsc::Sender<Result<pb::SessionEvent, GrpcStatus>>;

impl Watcher {
    fn event(
        &self,
        stored: StoredSession,
        previous: Option<Status>,
        now: Timestamp,
    ) -> Result<pb::SessionEvent, AppError> {
        let occurred_at = match previous {
            // The first event is the state as of now; a change happened when it was written.
            None => now.0,
            Some(_) => stored.session.ended_at.unwrap_or(now.0),
        };
        Ok(pb::SessionEvent {
            session: Some(self.view.session(
                stored,
                Audience::from(&self.caller.credential),
                now,
            )?),
            previous_status: previous.map_or(pb::SessionStatus::Unspecified, status_to_pb) as i32,
            occurred_at: Some(convert::timestamp(occurred_at)),
        })
    }

    async fn run(mut self, first: StoredSession, tx: Sender) {
        self.metrics.watch_opened();
        let _open = OpenStream(self.metrics.clone());
        let now = Timestamp::now();
        let (mut last, mut expires_at) =
            match effective_status(&first.session.status, first.session.expires_at, now) {
                Ok(s) => (s, first.session.expires_at),
                Err(e) => return drop(tx.send(Err(e.into())).await),
            };
        if tx
            .send(self.event(first, None, now).map_err(Into::into))
            .await
            .is_err()
            || last.is_terminal()
        {
            return;
        }
        loop {
            let until_expiry =
                Duration::from_micros((expires_at - Timestamp::now().0).max(0) as u64 + 5_000);
            let stopping = tokio::select! {
                _ = self.subscription.changed() => false,
                _ = tokio::time::sleep(until_expiry) => false,
                _ = tokio::time::sleep(RESYNC_EVERY) => false,
                _ = self.shutdown.wait_for(|stopping| *stopping) => true,
                _ = tx.closed() => return,
            };
            if stopping {
                let status = GrpcStatus::unavailable(
                    "server is shutting down; watch again to reach another replica",
                );
                let _ = tx.send(Err(status)).await;
                return;
            }
            let stored = match db::sessions::get(
                &self.db,
                &self.id,
                &self.caller.store_id,
                self.caller.environment,
            )
            .await
            {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return drop(
                        tx.send(Err(GrpcStatus::not_found("Session not found")))
                            .await,
                    )
                }
                Err(e) => {
                    // Keep the stream, and read again after a pause (not in a tight loop).
                    tracing::warn!(error = %e, session_id = %self.id, "watch: re-read failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let now = Timestamp::now();
            expires_at = stored.session.expires_at;
            let status = match effective_status(&stored.session.status, expires_at, now) {
                Ok(s) => s,
                Err(e) => return drop(tx.send(Err(e.into())).await),
            };
            if status == last {
                continue;
            }
            let event = self.event(stored, Some(last), now).map_err(Into::into);
            if tx.send(event).await.is_err() || status.is_terminal() {
                return;
            }
            last = status;
        }
    }
}
