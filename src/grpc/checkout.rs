//! CheckoutService. CreateSession and GetSession are served here; WatchSession, ListSessions
//! and ExpireSession land with issue 4 (until then the generated defaults answer
//! UNIMPLEMENTED, after authentication).
use super::{
    auth::{merchant, Credential, Merchant},
    convert,
    session_input::session_input,
};
use crate::{
    db::{
        self,
        session_create::{CreatePlan, Created},
        sessions::StoredSession,
        Db,
    },
    domain::{checkout::SessionRequest, ids::SessionId, time::Timestamp, Invalid},
    error::{AppError, AppResult},
    pb::{self, checkout_service_server::CheckoutService},
};
use std::collections::HashMap;
use tonic::{Request, Response, Status};

pub struct Checkout {
    pub db: Db,
    pub hosted_url_template: String,
}

pub const SESSION_ID_PLACEHOLDER: &str = "{CHECKOUT_SESSION_ID}";
pub const ORDER_ID_PLACEHOLDER: &str = "{ORDER_ID}";

fn session_not_found() -> AppError {
    AppError::NotFound("Session not found".into())
}

/// A session id from a request. A malformed id is NOT_FOUND, exactly like an unknown one.
fn session_id(raw: &str) -> AppResult<SessionId> {
    if raw.trim().is_empty() {
        return Err(Invalid::field("session_id", "session_id is required").into());
    }
    SessionId::parse(raw.trim()).ok_or_else(session_not_found)
}

fn status_to_pb(stored: &str, expires_at: i64, now: Timestamp) -> AppResult<pb::SessionStatus> {
    Ok(match stored {
        // Past its expiry a session is EXPIRED, whether or not the sweeper got to it.
        "open" if expires_at <= now.0 => pb::SessionStatus::Expired,
        "open" => pb::SessionStatus::Open,
        "completed" => pb::SessionStatus::Completed,
        "cancelled" => pb::SessionStatus::Cancelled,
        "expired" => pb::SessionStatus::Expired,
        other => {
            return Err(AppError::internal(format!(
                "unknown stored session status {other:?}"
            )))
        }
    })
}

fn json_map(what: &str, raw: &str) -> AppResult<HashMap<String, String>> {
    serde_json::from_str(raw).map_err(|e| AppError::internal(format!("stored {what}: {e}")))
}

/// Fills the placeholders that are known; `{ORDER_ID}` stays until there is an order.
pub fn fill_url(url: &str, session_id: &str, order_id: Option<&str>) -> String {
    let url = url.replace(SESSION_ID_PLACEHOLDER, session_id);
    match order_id {
        Some(order) => url.replace(ORDER_ID_PLACEHOLDER, order),
        None => url,
    }
}

impl Checkout {
    pub fn checkout_url(&self, session_id: &str) -> String {
        self.hosted_url_template
            .replace(SESSION_ID_PLACEHOLDER, session_id)
    }

    /// The client's view of a session. Store-slug callers get the reduced view: no
    /// metadata and no order_merchant_external_id.
    pub fn session_to_pb(
        &self,
        stored: StoredSession,
        credential: &Credential,
        now: Timestamp,
    ) -> AppResult<pb::Session> {
        let s = stored.session;
        let full_view = matches!(credential, Credential::ApiKey(_));
        let status = status_to_pb(&s.status, s.expires_at, now)?;
        let order_id = s.order_id.as_deref();
        let lines = stored
            .lines
            .into_iter()
            .map(|l| {
                Ok(pb::SessionLine {
                    product_id: l
                        .product_id
                        .map(|id| crate::domain::ids::ProductId::from_db(id).short_id())
                        .unwrap_or_default(),
                    product_version_id: l.product_version_id.unwrap_or_default(),
                    product_name: l.product_name,
                    unit_amount: l.unit_amount,
                    quantity: l.quantity,
                    amount_total: l.amount_total,
                    billing_period: convert::billing_period_to_pb(&l.billing_period)?,
                    trial_days: l.trial_days,
                    subscription: l.subscription,
                    server_id: l.server_id.unwrap_or_default(),
                    gift_to: l.gift_to_platform.map(|platform| pb::GiftTo {
                        platform,
                        id: l.gift_to_id.unwrap_or_default(),
                    }),
                    custom_variables: json_map("custom_variables", &l.custom_variables)?,
                    metadata: if full_view {
                        json_map("line metadata", &l.metadata)?
                    } else {
                        HashMap::new()
                    },
                })
            })
            .collect::<AppResult<Vec<_>>>()?;
        let billing_detail = s
            .billing_detail
            .as_deref()
            .map(|raw| {
                let m = json_map("billing_detail", raw)?;
                let get = |k: &str| m.get(k).cloned().unwrap_or_default();
                Ok::<_, AppError>(pb::BillingDetail {
                    email: get("email"),
                    name: get("name"),
                    country: get("country"),
                    state: get("state"),
                    postal_code: get("postal_code"),
                    line1: get("line1"),
                    city: get("city"),
                })
            })
            .transpose()?;
        Ok(pb::Session {
            checkout_url: if s.amount_total > 0 {
                self.checkout_url(&s.id)
            } else {
                String::new()
            },
            success_url: s
                .success_url
                .as_deref()
                .map(|u| fill_url(u, &s.id, order_id))
                .unwrap_or_default(),
            cancel_url: s
                .cancel_url
                .as_deref()
                .map(|u| fill_url(u, &s.id, order_id))
                .unwrap_or_default(),
            environment: convert::stored_environment(&s.environment)?,
            status: status as i32,
            lines,
            metadata: if full_view {
                json_map("metadata", &s.metadata)?
            } else {
                HashMap::new()
            },
            order_merchant_external_id: if full_view {
                s.order_merchant_external_id.unwrap_or_default()
            } else {
                String::new()
            },
            order_id: s.order_id.clone().unwrap_or_default(),
            created_at: Some(convert::timestamp(s.created_at)),
            expires_at: Some(convert::timestamp(s.expires_at)),
            completed_at: convert::opt_timestamp(s.completed_at),
            id: s.id,
            store_id: s.store_id,
            currency: s.currency,
            amount_subtotal: s.amount_subtotal,
            amount_discount: s.amount_discount,
            amount_total: s.amount_total,
            customer_id: s.customer_id.unwrap_or_default(),
            buyer_email: s.buyer_email.unwrap_or_default(),
            affiliate_code: s.affiliate_code.unwrap_or_default(),
            coupon_code: s.coupon_code.unwrap_or_default(),
            store_name: s.store_name,
            auto_redirect: s.auto_redirect,
            with_trial: s.with_trial,
            billing_detail,
        })
    }
}

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The `idempotency-key` metadata: 1 to 255 printable ASCII characters, if present.
fn idempotency_key<T>(req: &Request<T>) -> AppResult<Option<String>> {
    let Some(value) = req.metadata().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::field(
            IDEMPOTENCY_HEADER,
            "idempotency-key must be 1 to 255 printable ASCII characters",
        )
        .into());
    }
    Ok(Some(key.to_owned()))
}

/// The SPEC's status word in `Idempotency-Key already used by Completed session cs_…`.
fn status_word(status: pb::SessionStatus) -> &'static str {
    match status {
        pb::SessionStatus::Completed => "Completed",
        pb::SessionStatus::Cancelled => "Cancelled",
        pb::SessionStatus::Expired => "Expired",
        pb::SessionStatus::Open | pb::SessionStatus::Unspecified => "Open",
    }
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
        let client_token = if free {
            String::new()
        } else {
            stored.session.client_token.clone()
        };
        let session = self.session_to_pb(stored, &caller.credential, now)?;
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
            return Err(Invalid::field(
                IDEMPOTENCY_HEADER,
                "Idempotency-Key was already used with different request parameters",
            )
            .into());
        }
        let id = SessionId::from_trusted(session_id);
        let stored = db::sessions::get(&self.db, &id, &caller.store_id, caller.environment)
            .await?
            .ok_or_else(|| AppError::internal("idempotency key without its session"))?;
        let status = status_to_pb(&stored.session.status, stored.session.expires_at, now)?;
        if status == pb::SessionStatus::Open {
            return self.create_reply(stored, caller, now);
        }
        Err(AppError::FailedPrecondition {
            message: format!(
                "Idempotency-Key already used by {} session {id}",
                status_word(status)
            ),
            info: Some((
                "IDEMPOTENCY_KEY_ALREADY_USED".into(),
                vec![
                    ("session_id".into(), id.to_string()),
                    ("status".into(), status.as_str_name().into()),
                ],
            )),
        })
    }
}

#[tonic::async_trait]
impl CheckoutService for Checkout {
    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let caller = merchant(&req)?.clone();
        let key = idempotency_key(&req)?;
        let request = SessionRequest::parse(session_input(req.into_inner(), &caller.credential)?)?;
        let fingerprint = request.fingerprint();
        let now = Timestamp::now();
        // A store slug is public: its callers get a keyspace of their own, so a browser can
        // never claim (or replay) a key the merchant's backend uses.
        let key = key.map(|k| match caller.credential {
            Credential::ApiKey(_) => format!("key:{k}"),
            Credential::StoreSlug => format!("slug:{k}"),
        });
        let plan = CreatePlan {
            request: &request,
            store_id: &caller.store_id,
            environment: caller.environment,
            idempotency_key: key.as_deref(),
            fingerprint: &fingerprint,
            now,
        };
        let reply = match db::session_create::create(&self.db, &plan).await? {
            Created::New(stored) => self.create_reply(*stored, &caller, now)?,
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

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let caller = merchant(&req)?;
        let id = session_id(&req.get_ref().session_id)?;
        let stored = db::sessions::get(&self.db, &id, &caller.store_id, caller.environment)
            .await?
            .ok_or_else(session_not_found)?;
        Ok(Response::new(self.session_to_pb(
            stored,
            &caller.credential,
            Timestamp::now(),
        )?))
    }
}
