//! AdminService resources as protobuf messages, and its page tokens.
use super::convert;
use crate::{
    db::{self, catalog, stores::Store},
    domain::Invalid,
    error::AppResult,
    pb,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

pub fn store_to_pb(s: Store) -> pb::Store {
    pb::Store {
        id: s.row.id,
        slug: s.row.slug,
        name: s.row.name,
        active: s.row.active,
        approved_for_prod: s.row.approved_for_prod,
        allowed_return_origins: s.allowed_return_origins,
        created_at: Some(convert::timestamp(s.row.created_at)),
    }
}

pub fn api_key_to_pb(k: db::api_keys::ApiKeyRow) -> AppResult<pb::ApiKey> {
    Ok(pb::ApiKey {
        environment: convert::stored_environment(&k.environment)?,
        id: k.id,
        store_id: k.store_id,
        created_at: Some(convert::timestamp(k.created_at)),
        revoked_at: convert::opt_timestamp(k.revoked_at),
        secret_prefix: k.secret_prefix,
    })
}

pub fn product_to_pb(p: catalog::Product) -> pb::Product {
    pb::Product {
        id: p.id,
        store_id: p.store_id,
        name: p.name,
        description: p.description,
        requires_server_selection: p.requires_server_selection,
        active: p.active,
        created_at: Some(convert::timestamp(p.created_at)),
        active_test_version_id: p.active_test_version_id.unwrap_or_default(),
        active_prod_version_id: p.active_prod_version_id.unwrap_or_default(),
    }
}

pub fn version_to_pb(v: catalog::ProductVersion) -> AppResult<pb::ProductVersion> {
    Ok(pb::ProductVersion {
        billing_period: convert::billing_period_to_pb(&v.billing_period)?,
        active_environments: v
            .active_environments
            .iter()
            .map(|e| convert::stored_environment(e))
            .collect::<AppResult<_>>()?,
        id: v.id,
        product_id: v.product_id,
        number: v.number,
        prices: v
            .prices
            .into_iter()
            .map(|p| pb::Price {
                currency: p.currency,
                unit_amount: p.unit_amount,
            })
            .collect(),
        trial_days: v.trial_days,
        created_at: Some(convert::timestamp(v.created_at)),
    })
}

pub fn coupon_to_pb(c: catalog::CouponRow) -> pb::Coupon {
    let discount = match (c.percent_off, c.amount_off) {
        (Some(p), _) => Some(pb::coupon::Discount::PercentOff(p)),
        (None, Some(a)) => Some(pb::coupon::Discount::AmountOff(a)),
        (None, None) => None,
    };
    pb::Coupon {
        id: c.id,
        store_id: c.store_id,
        code: c.code,
        discount,
        currency: c.currency.unwrap_or_default(),
        expires_at: convert::opt_timestamp(c.expires_at),
        max_redemptions: c.max_redemptions.unwrap_or(0),
        minimum_amount: c.minimum_amount.unwrap_or(0),
        created_at: Some(convert::timestamp(c.created_at)),
        active: c.active,
    }
}

pub fn delivery_to_pb(d: db::webhooks::DeliveryRow) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id,
        endpoint_id: d.endpoint_id,
        event_id: d.event_id,
        event_type: d.event_type,
        attempt: d.attempt,
        response_status: d.response_status.unwrap_or(0),
        success: d.success,
        error: d.error.unwrap_or_default(),
        duration_ms: d.duration_ms,
        attempted_at: Some(convert::timestamp(d.attempted_at)),
    }
}

/// Page tokens are opaque to clients: base64url of `attempted_at:id`.
pub fn encode_cursor(c: &db::webhooks::DeliveryCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.attempted_at, c.id))
}

pub fn decode_cursor(token: &str) -> Result<Option<db::webhooks::DeliveryCursor>, Invalid> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Invalid::field("page_token", "Invalid page_token");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (at, id) = raw.split_once(':').ok_or_else(invalid)?;
    Ok(Some(db::webhooks::DeliveryCursor {
        attempted_at: at.parse().map_err(|_| invalid())?,
        id: id.to_owned(),
    }))
}
