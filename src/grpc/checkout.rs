//! CheckoutService: thin handlers over the session rules, the create transaction, the
//! lifecycle queries and the watch loop.
use super::{
    auth::{merchant, Credential, Merchant},
    convert,
    feed::{EventStream, Feed},
    page_token::{filters_digest, PageToken},
    session_input::session_input,
    session_pb::{
        effective_status, session_id, session_not_found, status_to_pb, Audience, SessionView,
    },
    watch::{watch_stream, WatchStream, Watcher},
};
use crate::{
    db::{
        self, lifecycle,
        session_create::{CreatePlan, Created},
        sessions::{ListCursor, ListFilter, StoredSession},
        Db,
    },
    domain::{
        checkout::SessionRequest,
        ids::SessionId,
        session_state::{already_ended, Status},
        time::Timestamp,
        Invalid,
    },
    error::{AppError, AppResult},
    events::Hub,
    metrics::Metrics,
    pb::{self, checkout_service_server::CheckoutService},
};
use std::sync::Arc;
use tonic::{Request, Response, Status as GrpcStatus};

pub struct Checkout {
    pub db: Db,
    pub view: Arc<SessionView>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Client tokens are derived from the session id with this (`crate::secrets`).
    pub keys: Arc<crate::secrets::Keyring>,
}

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The `idempotency-key` metadata: 1 to 255 printable ASCII characters, if present.
fn idempotency_key<T>(req: &Request<T>) -> AppResult<Option<String>> {
    let Some(value) = req.metadata().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        let message = "idempotency-key must be 1 to 255 printable ASCII characters";
        return Err(Invalid::field(IDEMPOTENCY_HEADER, message).into());
    }
    Ok(Some(key.to_owned()))
}

fn list_filter(r: &pb::ListSessionsRequest) -> AppResult<ListFilter> {
    let status = match pb::SessionStatus::try_from(r.status) {
        Ok(pb::SessionStatus::Unspecified) => None,
        Ok(pb::SessionStatus::Open) => Some(Status::Open),
        Ok(pb::SessionStatus::Completed) => Some(Status::Completed),
        Ok(pb::SessionStatus::Cancelled) => Some(Status::Cancelled),
        Ok(pb::SessionStatus::Expired) => Some(Status::Expired),
        Err(_) => return Err(Invalid::field("status", "status is not a SessionStatus").into()),
    };
    let time = |field: &str, t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| convert::from_timestamp(field, t).map(|t| t.0))
            .transpose()
    };
    Ok(ListFilter {
        status,
        customer_id: (!r.customer_id.is_empty()).then(|| r.customer_id.clone()),
        created_after: time("created_after", &r.created_after)?,
        created_before: time("created_before", &r.created_before)?,
    })
}

impl Checkout {
    /// The reply for a stored session: a retry with the same key gets exactly this again.
    fn create_reply(
        &self,
        stored: StoredSession,
        caller: &Merchant,
        now: Timestamp,
    ) -> AppResult<pb::CreateSessionResponse> {
        let free = stored.session.amount_total == 0;
        // Only the token's hash is stored; the token is derived again under the key whose
        // derivation has that hash, so a replay returns the very token first returned.
        // Derived rather than random and sealed: nothing but a hash need be stored, and the
        // hash alone lets a verifier check a token without any key. A session from before
        // derived tokens (or whose key was dropped) cannot get its token back: it gets the
        // one the current key derives.
        let client_token = if free {
            String::new()
        } else {
            let id = &stored.session.id;
            self.keys
                .client_token(id, &stored.session.client_token)
                .unwrap_or_else(|| self.keys.current_client_token(id))
        };
        let session = self
            .view
            .session(stored, Audience::from(&caller.credential), now)?;
        Ok(pb::CreateSessionResponse {
            outcome: if free {
                pb::Outcome::FreeOrder
            } else {
                pb::Outcome::PaymentRequired
            } as i32,
            checkout_url: session.checkout_url.clone(),
            client_token,
            session: Some(session),
        })
    }

    /// A second request with a claimed key: the same session while it is open, otherwise
    /// FAILED_PRECONDITION naming it; other parameters are INVALID_ARGUMENT.
    async fn replay(
        &self,
        caller: &Merchant,
        session_id: String,
        same_request: bool,
        now: Timestamp,
    ) -> AppResult<pb::CreateSessionResponse> {
        if !same_request {
            let message = "Idempotency-Key was already used with different request parameters";
            return Err(Invalid::field(IDEMPOTENCY_HEADER, message).into());
        }
        let id = SessionId::from_trusted(session_id);
        let stored = db::sessions::get(&self.db, &id, &caller.store_id, caller.environment)
            .await?
            .ok_or_else(|| AppError::internal("idempotency key without its session"))?;
        let status = effective_status(&stored.session.status, stored.session.expires_at, now)?;
        if status == Status::Open {
            return self.create_reply(stored, caller, now);
        }
        Err(AppError::FailedPrecondition {
            message: format!(
                "Idempotency-Key already used by {} session {id}",
                status.word()
            ),
            info: Some((
                "IDEMPOTENCY_KEY_ALREADY_USED".into(),
                vec![
                    ("session_id".into(), id.to_string()),
                    ("status".into(), status_to_pb(status).as_str_name().into()),
                ],
            )),
        })
    }

    async fn scoped(&self, caller: &Merchant, id: &SessionId) -> AppResult<StoredSession> {
        db::sessions::get(&self.db, id, &caller.store_id, caller.environment)
            .await?
            .ok_or_else(session_not_found)
    }
}

type Reply<T> = Result<Response<T>, GrpcStatus>;

impl Checkout {
    /// The caller's event feed (the auth layer already refused a store slug).
    fn feed<T>(&self, req: &Request<T>) -> AppResult<Feed> {
        let caller = merchant(req)?;
        Ok(Feed {
            db: self.db.clone(),
            view: self.view.clone(),
            store_id: caller.store_id.clone(),
            environment: caller.environment,
        })
    }
}

#[tonic::async_trait]
impl CheckoutService for Checkout {
    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Reply<pb::CreateSessionResponse> {
        let caller = merchant(&req)?.clone();
        // A store slug is public: its callers get a keyspace of their own, so a browser can
        // never claim (or replay) a key the merchant's backend uses.
        let key = idempotency_key(&req)?.map(|k| match caller.credential {
            Credential::ApiKey(_) => format!("key:{k}"),
            Credential::StoreSlug => format!("slug:{k}"),
        });
        let request = SessionRequest::parse(session_input(req.into_inner(), &caller.credential)?)?;
        let fingerprint = request.fingerprint();
        let now = Timestamp::now();
        let plan = CreatePlan {
            request: &request,
            store_id: &caller.store_id,
            environment: caller.environment,
            idempotency_key: key.as_deref(),
            fingerprint: &fingerprint,
            now,
            keys: &self.keys,
        };
        let reply = match db::session_create::create(&self.db, &plan).await? {
            Created::New(stored) => {
                let (store, env) = (caller.store_id.as_str(), caller.environment.as_str());
                self.hub.feed.published(store, env);
                let reply = self.create_reply(*stored, &caller, now)?;
                let outcome = if reply.outcome == pb::Outcome::FreeOrder as i32 {
                    "free_order"
                } else {
                    "payment_required"
                };
                self.metrics.session_created(outcome);
                if outcome == "free_order" {
                    self.metrics.session_ended("completed");
                }
                reply
            }
            Created::Replay {
                session_id,
                fingerprint: earlier,
            } => {
                self.replay(&caller, session_id, earlier == fingerprint, now)
                    .await?
            }
        };
        Ok(Response::new(reply))
    }

    async fn get_session(&self, req: Request<pb::GetSessionRequest>) -> Reply<pb::Session> {
        let caller = merchant(&req)?;
        let stored = self
            .scoped(caller, &session_id(&req.get_ref().session_id)?)
            .await?;
        let view =
            self.view
                .session(stored, Audience::from(&caller.credential), Timestamp::now())?;
        Ok(Response::new(view))
    }

    type WatchSessionStream = WatchStream;

    async fn watch_session(&self, req: Request<pb::WatchSessionRequest>) -> Reply<WatchStream> {
        let caller = merchant(&req)?.clone();
        let id = session_id(&req.get_ref().session_id)?;
        // Subscribe first, then read: a change between the two is seen by the watcher.
        let subscription = self.hub.subscribe(id.as_str());
        // This read is also the tenancy check: the hub later reads the session for all its
        // watchers without a scope, which is sound as a session never changes store or
        // environment.
        let first = self.scoped(&caller, &id).await?;
        let watcher = Watcher {
            view: self.view.clone(),
            audience: Audience::from(&caller.credential),
            subscription,
            metrics: self.metrics.clone(),
        };
        Ok(Response::new(watch_stream(watcher, first)))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        let caller = merchant(&req)?.clone();
        let r = req.into_inner();
        let filter = list_filter(&r)?;
        let digest = filters_digest(&[
            &r.status.to_string(),
            &r.customer_id,
            &format!("{:?}", filter.created_after),
            &format!("{:?}", filter.created_before),
        ]);
        let size = convert::page_size(r.page_size)?;
        let after = PageToken::decode(&r.page_token, &digest)?.map(|t| ListCursor {
            created_at: t.at,
            id: t.id,
        });
        let now = Timestamp::now();
        let (page, next) = db::sessions::list(
            &self.db,
            &caller.store_id,
            caller.environment,
            &filter,
            after.as_ref(),
            size,
            now,
        )
        .await?;
        let sessions = page
            .into_iter()
            .map(|s| self.view.session(s, Audience::Full, now))
            .collect::<AppResult<Vec<_>>>()?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions,
            next_page_token: next
                .map(|c| PageToken::new(c.created_at, c.id, digest).encode())
                .unwrap_or_default(),
        }))
    }

    async fn expire_session(&self, req: Request<pb::ExpireSessionRequest>) -> Reply<pb::Session> {
        let caller = merchant(&req)?.clone();
        let id = session_id(&req.get_ref().session_id)?;
        let now = Timestamp::now();
        self.scoped(&caller, &id).await?; // tenancy: another store's session is NOT_FOUND
        if !lifecycle::end(&self.db, &id, Status::Expired, lifecycle::Until::Expiry).await? {
            // It was not open: it ended before, or in a race just now.
            let current = self.scoped(&caller, &id).await?;
            let status =
                effective_status(&current.session.status, current.session.expires_at, now)?;
            return Err(AppError::failed_precondition(already_ended(status)).into());
        }
        self.hub.notify(id.as_str());
        self.hub
            .feed
            .published(caller.store_id.as_str(), caller.environment.as_str());
        self.metrics.session_ended("expired");
        let stored = self.scoped(&caller, &id).await?;
        Ok(Response::new(self.view.session(
            stored,
            Audience::Full,
            Timestamp::now(),
        )?))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Reply<pb::ListEventsResponse> {
        let feed = self.feed(&req)?;
        Ok(Response::new(feed.list(req.into_inner()).await?))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(&self, req: Request<pb::WatchEventsRequest>) -> Reply<EventStream> {
        let feed = self.feed(&req)?;
        let stream = feed
            .watch(req.into_inner(), &self.hub.feed, self.shutdown.clone())
            .await?;
        Ok(Response::new(stream))
    }
}
