//! AdminService management of webhook endpoints: list, update, delete, rotate the secret.
//! The handlers are called from `admin.rs`, which holds the one `AdminService` impl.
use super::{
    admin::{Admin, Reply},
    admin_lists::Paging,
    auth::platform,
    convert::{self, id, mask_paths, required},
};
use crate::{
    db::{
        secrets::{endpoint_aad, previous_aad},
        webhook_endpoints::{self as endpoints, EndpointPatch, Rotation},
        webhooks::EndpointRow,
    },
    domain::{
        ids::WebhookEndpointId,
        time::Timestamp,
        webhook::{generate_secret, WebhookUrl},
        webhook_subscription::{event_type_list, event_types, overlap},
        Environment,
    },
    error::{AppError, AppResult},
    pb,
};
use tonic::{Request, Response};

fn endpoint_not_found() -> AppError {
    AppError::NotFound("Webhook endpoint not found".into())
}

fn endpoint_to_pb(e: EndpointRow) -> AppResult<pb::WebhookEndpoint> {
    Ok(pb::WebhookEndpoint {
        environment: convert::stored_environment(&e.environment)?,
        event_types: event_type_list(&e.event_types),
        disabled: e.disabled_at.is_some(),
        disabled_at: convert::opt_timestamp(e.disabled_at),
        created_at: Some(convert::timestamp(e.created_at)),
        // Only while it still signs: an ended overlap is as good as none.
        previous_secret_expires_at: convert::opt_timestamp(
            e.previous_secret_expires_at
                .filter(|t| *t > Timestamp::now().0),
        ),
        id: e.id,
        store_id: e.store_id,
        url: e.url,
    })
}

fn endpoint_id(field: &str, raw: &str) -> Result<WebhookEndpointId, crate::domain::Invalid> {
    id(field, raw, WebhookEndpointId::parse)
}

pub async fn list(
    a: &Admin,
    req: Request<pb::ListWebhookEndpointsRequest>,
) -> Reply<pb::ListWebhookEndpointsResponse> {
    platform(&req)?;
    let r = req.into_inner();
    let store = super::admin::store_id(&r.store_id)?;
    let paging = Paging::parse(
        "ListWebhookEndpoints",
        store.as_str(),
        r.page_size,
        &r.page_token,
    )?;
    let (rows, next) = endpoints::list(&a.db, &store, paging.after.as_ref(), paging.size)
        .await?
        .ok_or_else(super::admin::store_not_found)?;
    Ok(Response::new(pb::ListWebhookEndpointsResponse {
        webhook_endpoints: rows
            .into_iter()
            .map(endpoint_to_pb)
            .collect::<AppResult<_>>()?,
        next_page_token: paging.next_token(next),
    }))
}

pub async fn update(
    a: &Admin,
    req: Request<pb::UpdateWebhookEndpointRequest>,
) -> Reply<pb::WebhookEndpoint> {
    platform(&req)?;
    let r = req.into_inner();
    let given = required("webhook_endpoint", &r.webhook_endpoint)?;
    let id = endpoint_id("webhook_endpoint.id", &given.id)?;
    let paths = mask_paths(&r.update_mask, &["url", "event_types", "disabled"])?;
    let mut patch = EndpointPatch::default();
    for path in &paths {
        match *path {
            "event_types" => {
                let types =
                    event_types(&given.event_types).map_err(|e| e.within("webhook_endpoint"))?;
                patch.event_types = Some(types);
            }
            "disabled" => patch.disabled = Some(given.disabled),
            _ => {}
        }
    }
    if paths.contains(&"url") {
        // The URL rules depend on the endpoint's environment: read it first.
        let current = endpoints::get(&a.db, &id)
            .await?
            .ok_or_else(endpoint_not_found)?;
        let env: Environment = current
            .environment
            .parse()
            .map_err(|_| AppError::internal("unexpected stored environment"))?;
        let allow_private = a.webhook_allow_private_targets;
        let url = WebhookUrl::parse(&given.url, env, allow_private)
            .map_err(|e| e.within("webhook_endpoint"))?;
        crate::webhook_dns::check_registration(&url, allow_private)
            .await
            .map_err(|e| e.within("webhook_endpoint"))?;
        patch.url = Some(url.as_str().to_owned());
    }
    let row = endpoints::update(&a.db, &id, &patch)
        .await?
        .ok_or_else(endpoint_not_found)?;
    Ok(Response::new(endpoint_to_pb(row)?))
}

pub async fn delete(
    a: &Admin,
    req: Request<pb::DeleteWebhookEndpointRequest>,
) -> Reply<pb::WebhookEndpoint> {
    platform(&req)?;
    let id = endpoint_id("endpoint_id", &req.get_ref().endpoint_id)?;
    let row = endpoints::delete(&a.db, &id)
        .await?
        .ok_or_else(endpoint_not_found)?;
    Ok(Response::new(endpoint_to_pb(row)?))
}

/// Rotations that lose the race to a concurrent one retry this often before giving up.
const ROTATE_TRIES: usize = 3;

pub async fn rotate(
    a: &Admin,
    req: Request<pb::RotateWebhookEndpointSecretRequest>,
) -> Reply<pb::RotateWebhookEndpointSecretResponse> {
    platform(&req)?;
    let r = req.into_inner();
    let id = endpoint_id("endpoint_id", &r.endpoint_id)?;
    let overlap = overlap(r.overlap.map(|d| (d.seconds, d.nanos)))?;
    for _ in 0..ROTATE_TRIES {
        let current = endpoints::get(&a.db, &id)
            .await?
            .ok_or_else(endpoint_not_found)?;
        let old = a
            .keys
            .open(&current.secret, &endpoint_aad(id.as_str()))
            .map_err(|e| {
                AppError::internal(format!("endpoint {id}: secret cannot be opened: {e}"))
            })?;
        // Shown once, in this reply; only its sealed form is stored.
        let secret = generate_secret();
        let rotation = Rotation {
            replaced: current.secret,
            sealed_new: a.keys.seal(&secret, &endpoint_aad(id.as_str())),
            sealed_previous: (overlap > 0).then(|| a.keys.seal(&old, &previous_aad(id.as_str()))),
            previous_expires_at: Timestamp::now().0 + overlap,
        };
        if endpoints::rotate(&a.db, &id, &rotation).await? {
            let row = endpoints::get(&a.db, &id)
                .await?
                .ok_or_else(endpoint_not_found)?;
            return Ok(Response::new(pb::RotateWebhookEndpointSecretResponse {
                secret,
                webhook_endpoint: Some(endpoint_to_pb(row)?),
            }));
        }
    }
    Err(
        AppError::failed_precondition("The endpoint's secret is being rotated concurrently; retry")
            .into(),
    )
}
