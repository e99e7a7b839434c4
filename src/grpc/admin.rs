//! AdminService: provisioning with the platform credential. Thin: each handler parses the
//! request into domain values, calls one query, and converts the result.
use super::{
    auth::platform,
    convert::{self, id, mask_paths, required},
};
use crate::{
    db::{self, catalog, stores::Store, Db},
    domain::{
        catalog::{
            product_description, product_name, CouponInput, NewCoupon, NewProduct,
            NewProductVersion, ProductPatch,
        },
        ids::{ApiKeyId, ProductId, ProductVersionId, StoreId, WebhookEndpointId},
        store::{origins, store_name, ApiKeySecret, NewStore, Slug, StorePatch},
        time::Timestamp,
        webhook::{generate_secret, WebhookUrl},
        Invalid,
    },
    error::{AppError, AppResult},
    pb::{self, admin_service_server::AdminService},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use tonic::{Request, Response, Status};

pub struct Admin {
    pub db: Db,
    pub webhook_allow_private_targets: bool,
}

fn store_not_found() -> AppError {
    AppError::NotFound("Store not found".into())
}

fn store_id(raw: &str) -> Result<StoreId, Invalid> {
    id("store_id", raw, StoreId::parse)
}

/// The SPEC's message for a product id that is not a `PROD_…` short id.
pub fn product_id(raw: &str) -> Result<ProductId, Invalid> {
    ProductId::parse(raw.trim()).ok_or_else(|| {
        let shown: String = raw.chars().take(100).collect();
        Invalid::field(
            "product_id",
            format!("Expected format: PROD_xxx, got \"{shown}\""),
        )
    })
}

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

fn api_key_to_pb(k: db::api_keys::ApiKeyRow) -> AppResult<pb::ApiKey> {
    Ok(pb::ApiKey {
        environment: convert::stored_environment(&k.environment)?,
        id: k.id,
        store_id: k.store_id,
        created_at: Some(convert::timestamp(k.created_at)),
        revoked_at: convert::opt_timestamp(k.revoked_at),
    })
}

fn product_to_pb(p: catalog::Product) -> pb::Product {
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

fn version_to_pb(v: catalog::ProductVersion) -> AppResult<pb::ProductVersion> {
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

fn coupon_to_pb(c: catalog::CouponRow) -> pb::Coupon {
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
    }
}

fn delivery_to_pb(d: db::webhooks::DeliveryRow) -> pb::WebhookDelivery {
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
fn encode_cursor(c: &db::webhooks::DeliveryCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.attempted_at, c.id))
}

fn decode_cursor(token: &str) -> Result<Option<db::webhooks::DeliveryCursor>, Invalid> {
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

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AdminService for Admin {
    async fn create_store(&self, req: Request<pb::CreateStoreRequest>) -> Reply<pb::Store> {
        platform(&req)?;
        let r = req.into_inner();
        let new = NewStore {
            slug: Slug::parse(&r.slug)?,
            name: store_name(&r.name)?,
            active: r.active,
            approved_for_prod: r.approved_for_prod,
            origins: origins(&r.allowed_return_origins)?,
        };
        let store = db::stores::create(&self.db, &new).await?;
        Ok(Response::new(store_to_pb(store)))
    }

    async fn get_store(&self, req: Request<pb::GetStoreRequest>) -> Reply<pb::Store> {
        platform(&req)?;
        let id = store_id(&req.get_ref().store_id)?;
        let store = db::stores::get(&self.db, &id)
            .await?
            .ok_or_else(store_not_found)?;
        Ok(Response::new(store_to_pb(store)))
    }

    async fn update_store(&self, req: Request<pb::UpdateStoreRequest>) -> Reply<pb::Store> {
        platform(&req)?;
        let r = req.into_inner();
        let store = required("store", &r.store)?;
        let id = id("store.id", &store.id, StoreId::parse)?;
        let allowed = [
            "slug",
            "name",
            "active",
            "approved_for_prod",
            "allowed_return_origins",
        ];
        let mut patch = StorePatch::default();
        for path in mask_paths(&r.update_mask, &allowed)? {
            match path {
                "slug" => patch.slug = Some(Slug::parse(&store.slug)?),
                "name" => patch.name = Some(store_name(&store.name)?),
                "active" => patch.active = Some(store.active),
                "approved_for_prod" => patch.approved_for_prod = Some(store.approved_for_prod),
                _ => patch.origins = Some(origins(&store.allowed_return_origins)?),
            }
        }
        let store = db::stores::update(&self.db, &id, &patch)
            .await?
            .ok_or_else(store_not_found)?;
        Ok(Response::new(store_to_pb(store)))
    }

    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Reply<pb::CreateApiKeyResponse> {
        platform(&req)?;
        let r = req.into_inner();
        let store = store_id(&r.store_id)?;
        let env = convert::environment("environment", r.environment)?;
        let secret = ApiKeySecret::generate(env);
        let key = db::api_keys::create(&self.db, &store, env, secret.hash())
            .await?
            .ok_or_else(store_not_found)?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key_id: key.id.clone(),
            secret: secret.expose().to_owned(),
            api_key: Some(api_key_to_pb(key)?),
        }))
    }

    async fn revoke_api_key(&self, req: Request<pb::RevokeApiKeyRequest>) -> Reply<pb::ApiKey> {
        platform(&req)?;
        let key_id = id("api_key_id", &req.get_ref().api_key_id, ApiKeyId::parse)?;
        let key = db::api_keys::revoke(&self.db, &key_id)
            .await?
            .ok_or_else(|| AppError::NotFound("API key not found".into()))?;
        Ok(Response::new(api_key_to_pb(key)?))
    }

    async fn create_product(&self, req: Request<pb::CreateProductRequest>) -> Reply<pb::Product> {
        platform(&req)?;
        let r = req.into_inner();
        let store = store_id(&r.store_id)?;
        let new = NewProduct::parse(&r.name, &r.description, r.requires_server_selection)?;
        let product = catalog::create_product(&self.db, &store, &new)
            .await?
            .ok_or_else(store_not_found)?;
        Ok(Response::new(product_to_pb(product)))
    }

    async fn get_product(&self, req: Request<pb::GetProductRequest>) -> Reply<pb::Product> {
        platform(&req)?;
        let id = product_id(&req.get_ref().product_id)?;
        let product = catalog::get_product(&self.db, id)
            .await?
            .ok_or_else(product_not_found)?;
        Ok(Response::new(product_to_pb(product)))
    }

    async fn update_product(&self, req: Request<pb::UpdateProductRequest>) -> Reply<pb::Product> {
        platform(&req)?;
        let r = req.into_inner();
        let product = required("product", &r.product)?;
        let id = product_id(&product.id).map_err(|e| e.within("product"))?;
        let allowed = ["name", "description", "requires_server_selection", "active"];
        let mut patch = ProductPatch::default();
        for path in mask_paths(&r.update_mask, &allowed)? {
            match path {
                "name" => patch.name = Some(product_name(&product.name)?),
                "description" => {
                    patch.description = Some(product_description(&product.description)?)
                }
                "requires_server_selection" => {
                    patch.requires_server_selection = Some(product.requires_server_selection)
                }
                _ => patch.active = Some(product.active),
            }
        }
        let product = catalog::update_product(&self.db, id, &patch)
            .await?
            .ok_or_else(product_not_found)?;
        Ok(Response::new(product_to_pb(product)))
    }

    async fn create_product_version(
        &self,
        req: Request<pb::CreateProductVersionRequest>,
    ) -> Reply<pb::ProductVersion> {
        platform(&req)?;
        let r = req.into_inner();
        let product = product_id(&r.product_id)?;
        let prices: Vec<(String, i64)> = r
            .prices
            .into_iter()
            .map(|p| (p.currency, p.unit_amount))
            .collect();
        let period = convert::billing_period("billing_period", r.billing_period)?;
        let new = NewProductVersion::parse(product, &prices, period, r.trial_days)?;
        let version = catalog::create_version(&self.db, &new)
            .await?
            .ok_or_else(product_not_found)?;
        Ok(Response::new(version_to_pb(version)?))
    }

    async fn activate_product_version(
        &self,
        req: Request<pb::ActivateProductVersionRequest>,
    ) -> Reply<pb::ProductVersion> {
        platform(&req)?;
        let r = req.into_inner();
        let version_id = id(
            "product_version_id",
            &r.product_version_id,
            ProductVersionId::parse,
        )?;
        let env = convert::environment("environment", r.environment)?;
        let version = catalog::activate_version(&self.db, &version_id, env)
            .await?
            .ok_or_else(|| AppError::NotFound("Product version not found".into()))?;
        Ok(Response::new(version_to_pb(version)?))
    }

    async fn create_coupon(&self, req: Request<pb::CreateCouponRequest>) -> Reply<pb::Coupon> {
        platform(&req)?;
        let r = req.into_inner();
        let store = store_id(&r.store_id)?;
        let expires_at = r
            .expires_at
            .as_ref()
            .map(|t| convert::from_timestamp("expires_at", t))
            .transpose()?;
        let (percent_off, amount_off) = match r.discount {
            Some(pb::create_coupon_request::Discount::PercentOff(p)) => (Some(p), None),
            Some(pb::create_coupon_request::Discount::AmountOff(a)) => (None, Some(a)),
            None => (None, None),
        };
        let input = CouponInput {
            code: &r.code,
            percent_off,
            amount_off,
            currency: &r.currency,
            expires_at,
            max_redemptions: r.max_redemptions,
            minimum_amount: r.minimum_amount,
        };
        let new = NewCoupon::parse(input, Timestamp::now())?;
        let coupon = catalog::create_coupon(&self.db, &store, &new)
            .await?
            .ok_or_else(store_not_found)?;
        Ok(Response::new(coupon_to_pb(coupon)))
    }

    async fn create_webhook_endpoint(
        &self,
        req: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Reply<pb::CreateWebhookEndpointResponse> {
        platform(&req)?;
        let r = req.into_inner();
        let store = store_id(&r.store_id)?;
        let env = convert::environment("environment", r.environment)?;
        let url = WebhookUrl::parse(&r.url, env, self.webhook_allow_private_targets)?;
        let endpoint =
            db::webhooks::create_endpoint(&self.db, &store, env, &url, generate_secret())
                .await?
                .ok_or_else(store_not_found)?;
        Ok(Response::new(pb::CreateWebhookEndpointResponse {
            environment: convert::stored_environment(&endpoint.environment)?,
            id: endpoint.id,
            url: endpoint.url,
            secret: endpoint.secret,
            store_id: endpoint.store_id,
        }))
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Reply<pb::ListWebhookDeliveriesResponse> {
        platform(&req)?;
        let r = req.into_inner();
        let store = store_id(&r.store_id)?;
        let endpoint = (!r.endpoint_id.is_empty())
            .then(|| id("endpoint_id", &r.endpoint_id, WebhookEndpointId::parse))
            .transpose()?;
        let size = convert::page_size(r.page_size)?;
        let cursor = decode_cursor(&r.page_token)?;
        db::stores::get(&self.db, &store)
            .await?
            .ok_or_else(store_not_found)?;
        let (rows, next) = db::webhooks::list_deliveries(
            &self.db,
            &store,
            endpoint.as_ref(),
            size,
            cursor.as_ref(),
        )
        .await?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: rows.into_iter().map(delivery_to_pb).collect(),
            next_page_token: next.as_ref().map(encode_cursor).unwrap_or_default(),
        }))
    }
}

fn product_not_found() -> AppError {
    AppError::NotFound("Product not found".into())
}
