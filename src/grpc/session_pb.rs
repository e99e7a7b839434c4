//! Sessions as clients see them, shared by every service that returns one.
use super::auth::Credential;
use crate::{
    db::{sessions::StoredSession, stored},
    domain::{ids::SessionId, session_state::Status, time::Timestamp, Invalid},
    error::{AppError, AppResult},
    pb,
};
use std::collections::HashMap;

pub const SESSION_ID_PLACEHOLDER: &str = "{CHECKOUT_SESSION_ID}";
pub const ORDER_ID_PLACEHOLDER: &str = "{ORDER_ID}";

/// Who is looking: the merchant's backend and the platform see everything; a storefront
/// (store slug) sees no metadata and no order_merchant_external_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Full,
    Storefront,
}

impl From<&Credential> for Audience {
    fn from(c: &Credential) -> Self {
        match c {
            Credential::ApiKey(_) => Audience::Full,
            Credential::StoreSlug => Audience::Storefront,
        }
    }
}

pub fn session_not_found() -> AppError {
    AppError::NotFound("Session not found".into())
}

/// A session id from a request. A malformed id is NOT_FOUND, exactly like an unknown one.
pub fn session_id(raw: &str) -> AppResult<SessionId> {
    if raw.trim().is_empty() {
        return Err(Invalid::field("session_id", "session_id is required").into());
    }
    let id = SessionId::parse(raw.trim()).ok_or_else(session_not_found)?;
    tracing::Span::current().record("session_id", id.as_str());
    Ok(id)
}

/// The stored status as clients see it (EXPIRED once past expires_at).
pub fn effective_status(stored_status: &str, expires_at: i64, now: Timestamp) -> AppResult<Status> {
    let status = stored("sessions.status", Status::from_db(stored_status))?;
    Ok(Status::effective(status, expires_at, now))
}

pub fn status_to_pb(status: Status) -> pb::SessionStatus {
    match status {
        Status::Open => pb::SessionStatus::Open,
        Status::Completed => pb::SessionStatus::Completed,
        Status::Cancelled => pb::SessionStatus::Cancelled,
        Status::Expired => pb::SessionStatus::Expired,
    }
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

pub struct SessionView {
    pub hosted_url_template: String,
}

impl SessionView {
    pub fn checkout_url(&self, session_id: &str) -> String {
        self.hosted_url_template
            .replace(SESSION_ID_PLACEHOLDER, session_id)
    }

    /// The client's view of a session. Store-slug callers get the reduced view: no
    /// metadata and no order_merchant_external_id.
    pub fn session(
        &self,
        stored: StoredSession,
        audience: Audience,
        now: Timestamp,
    ) -> AppResult<pb::Session> {
        let s = stored.session;
        let full_view = audience == Audience::Full;
        let status = status_to_pb(effective_status(&s.status, s.expires_at, now)?);
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
                    billing_period: super::convert::billing_period_to_pb(&l.billing_period)?,
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
            environment: super::convert::stored_environment(&s.environment)?,
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
            created_at: Some(super::convert::timestamp(s.created_at)),
            expires_at: Some(super::convert::timestamp(s.expires_at)),
            completed_at: super::convert::opt_timestamp(s.completed_at),
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
