//! Managing registered webhook endpoints: listing, changing, deleting and rotating their
//! secrets (creation and the delivery log are in `webhooks`).
use super::{
    schema::{webhook_endpoints, webhook_outbox},
    secrets::previous_aad,
    sessions::ListCursor,
    webhooks::EndpointRow,
    Db,
};
use crate::{
    domain::{ids::StoreId, ids::WebhookEndpointId, time::Timestamp},
    error::AppResult,
    secrets::Keyring,
};
use anyhow::Context;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// Changes asked for by UpdateWebhookEndpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    /// The stored form (`domain::webhook_subscription::event_types`).
    pub event_types: Option<String>,
    pub disabled: Option<bool>,
}

/// A page of a store's endpoints (deleted ones left out), newest first; `None` if the
/// store does not exist.
pub async fn list(
    db: &Db,
    store_id: &StoreId,
    after: Option<&ListCursor>,
    page_size: i64,
) -> AppResult<Option<(Vec<EndpointRow>, Option<ListCursor>)>> {
    let rows: Vec<EndpointRow> = with_conn!(db, |conn| {
        if !store_exists!(conn, store_id.as_str()) {
            return Ok(None);
        }
        let mut q = webhook_endpoints::table
            .filter(webhook_endpoints::store_id.eq(store_id.as_str()))
            .filter(webhook_endpoints::deleted_at.is_null())
            .select(EndpointRow::as_select())
            .order((
                webhook_endpoints::created_at.desc(),
                webhook_endpoints::id.desc(),
            ))
            .limit(page_size + 1)
            .into_boxed();
        if let Some(c) = after {
            q = q.filter(
                webhook_endpoints::created_at
                    .lt(c.created_at)
                    .or(webhook_endpoints::created_at
                        .eq(c.created_at)
                        .and(webhook_endpoints::id.lt(c.id.clone()))),
            );
        }
        q.load(conn).await?
    });
    Ok(Some(super::admin_lists::page(rows, page_size, |r| {
        (r.created_at, r.id.clone())
    })))
}

/// The endpoint unless it is unknown or deleted.
pub async fn get(db: &Db, id: &WebhookEndpointId) -> AppResult<Option<EndpointRow>> {
    with_conn!(db, |conn| {
        Ok(webhook_endpoints::table
            .find(id.as_str())
            .filter(webhook_endpoints::deleted_at.is_null())
            .select(EndpointRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Pending deliveries to an endpoint that must no longer receive any are marked
/// `disabled`, so re-enabling it later does not send old events. A delivery already in
/// flight finishes, and records its real outcome (the lease fences only its own result).
macro_rules! drop_pending {
    ($conn:ident, $id:expr, $now:expr) => {
        diesel::update(
            webhook_outbox::table
                .filter(webhook_outbox::endpoint_id.eq($id))
                .filter(webhook_outbox::state.eq("pending")),
        )
        .set((
            webhook_outbox::state.eq("disabled"),
            webhook_outbox::updated_at.eq($now),
        ))
        .execute($conn)
        .await?
    };
}

/// Applies the patch; `None` if the endpoint is unknown or deleted.
pub async fn update(
    db: &Db,
    id: &WebhookEndpointId,
    patch: &EndpointPatch,
) -> AppResult<Option<EndpointRow>> {
    let now = Timestamp::now().0;
    with_tx!(db, |conn| {
        let live = webhook_endpoints::table
            .find(id.as_str())
            .filter(webhook_endpoints::deleted_at.is_null());
        if let Some(url) = &patch.url {
            diesel::update(live)
                .set(webhook_endpoints::url.eq(url))
                .execute(conn)
                .await?;
        }
        if let Some(types) = &patch.event_types {
            diesel::update(live)
                .set(webhook_endpoints::event_types.eq(types))
                .execute(conn)
                .await?;
        }
        match patch.disabled {
            Some(true) => {
                let n = diesel::update(live.filter(webhook_endpoints::disabled_at.is_null()))
                    .set(webhook_endpoints::disabled_at.eq(now))
                    .execute(conn)
                    .await?;
                if n > 0 {
                    drop_pending!(conn, id.as_str(), now);
                }
            }
            Some(false) => {
                diesel::update(live)
                    .set(webhook_endpoints::disabled_at.eq(None::<i64>))
                    .execute(conn)
                    .await?;
            }
            None => {}
        }
        Ok(live
            .select(EndpointRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Deletes an endpoint: the row stays (the delivery log refers to it) with its secrets
/// erased, disabled, and no longer listed; its pending deliveries are dropped. `None` if
/// it is unknown or already deleted.
pub async fn delete(db: &Db, id: &WebhookEndpointId) -> AppResult<Option<EndpointRow>> {
    let now = Timestamp::now().0;
    with_tx!(db, |conn| {
        let live = webhook_endpoints::table
            .find(id.as_str())
            .filter(webhook_endpoints::deleted_at.is_null());
        let Some(mut row) = live
            .select(EndpointRow::as_select())
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        row.disabled_at = row.disabled_at.or(Some(now));
        row.deleted_at = Some(now);
        row.previous_secret = None;
        row.previous_secret_expires_at = None;
        diesel::update(live)
            .set((
                webhook_endpoints::deleted_at.eq(now),
                webhook_endpoints::disabled_at.eq(row.disabled_at),
                webhook_endpoints::secret.eq(""),
                webhook_endpoints::previous_secret.eq(None::<String>),
                webhook_endpoints::previous_secret_expires_at.eq(None::<i64>),
            ))
            .execute(conn)
            .await?;
        drop_pending!(conn, id.as_str(), now);
        Ok(Some(row))
    })
}

/// What a rotation writes: both values sealed by the caller for this row.
pub struct Rotation {
    /// The secret the caller read and replaced: the update applies only if it is still
    /// the current one, so two concurrent rotations cannot lose a secret unseen.
    pub replaced: String,
    pub sealed_new: String,
    /// The replaced secret sealed with `previous_aad`; `None` with a zero overlap.
    pub sealed_previous: Option<String>,
    pub previous_expires_at: i64,
}

/// `Ok(false)` if the secret changed (or the endpoint was deleted) since it was read.
pub async fn rotate(db: &Db, id: &WebhookEndpointId, r: &Rotation) -> AppResult<bool> {
    let n = with_tx!(db, |conn| {
        Ok(diesel::update(
            webhook_endpoints::table
                .find(id.as_str())
                .filter(webhook_endpoints::deleted_at.is_null())
                .filter(webhook_endpoints::secret.eq(&r.replaced)),
        )
        .set((
            webhook_endpoints::secret.eq(&r.sealed_new),
            webhook_endpoints::previous_secret.eq(&r.sealed_previous),
            webhook_endpoints::previous_secret_expires_at
                .eq(r.sealed_previous.as_ref().map(|_| r.previous_expires_at)),
        ))
        .execute(conn)
        .await?)
    })?;
    Ok(n == 1)
}

/// At start: previous secrets whose overlap has ended are erased; the others are resealed
/// under the current key if they are not already (see `super::secrets`).
pub async fn reseal_previous(db: &Db, keys: &Keyring) -> anyhow::Result<usize> {
    let now = Timestamp::now().0;
    let erased = with_tx!(db, |conn| {
        Ok(diesel::update(
            webhook_endpoints::table
                .filter(webhook_endpoints::previous_secret.is_not_null())
                .filter(webhook_endpoints::previous_secret_expires_at.le(now)),
        )
        .set((
            webhook_endpoints::previous_secret.eq(None::<String>),
            webhook_endpoints::previous_secret_expires_at.eq(None::<i64>),
        ))
        .execute(conn)
        .await?)
    })?;
    let current = format!("sealed:v1:{}:%", keys.current_id());
    let rows: Vec<(String, Option<String>)> = with_conn!(db, |conn| {
        webhook_endpoints::table
            .filter(webhook_endpoints::previous_secret.not_like(&current))
            .select((webhook_endpoints::id, webhook_endpoints::previous_secret))
            .load(conn)
            .await?
    });
    let mut changed = erased;
    for (id, stored) in rows {
        let Some(stored) = stored else { continue };
        let aad = previous_aad(&id);
        let plain = keys.open(&stored, &aad).with_context(|| {
            format!("webhook endpoint {id}: its previous secret cannot be opened")
        })?;
        let sealed = keys.seal(&plain, &aad);
        changed += with_tx!(db, |conn| {
            diesel::update(webhook_endpoints::table)
                .filter(webhook_endpoints::id.eq(&id))
                .filter(webhook_endpoints::previous_secret.eq(&stored))
                .set(webhook_endpoints::previous_secret.eq(&sealed))
                .execute(conn)
                .await
                .map_err(crate::error::AppError::from)
        })?;
    }
    Ok(changed)
}
