//! AdminService: provisioning with the platform credential. Thin: each handler parses the
//! request into domain values, calls one query, and converts the result.
use super::{
    admin_lists,
    admin_pb::{
        api_key_to_pb, coupon_to_pb, decode_cursor, delivery_to_pb, encode_cursor, product_to_pb,
        store_to_pb, version_to_pb,
    },
    admin_webhooks,
    auth::platform,
    convert::{self, id, mask_paths, required},
};
use crate::{
    db::{self, catalog, Db},
    domain::{
        catalog::{
            product_description, product_name, CouponInput, NewCoupon, NewProduct,
            NewProductVersion, ProductPatch,
        },
        checkout::product_short_id,
        ids::{ApiKeyId, ProductVersionId, StoreId, WebhookEndpointId},
        store::{origins, store_name, ApiKeySecret, NewStore, Slug, StorePatch},
        time::Timestamp,
        webhook::{generate_secret, WebhookUrl},
        Invalid,
    },
    error::AppError,
    pb::{self, admin_service_server::AdminService},
};
use tonic::{Request, Response, Status};

pub struct Admin {
    pub db: Db,
    /// Seals each new endpoint's signing secret.
    pub keys: std::sync::Arc<crate::secrets::Keyring>,
    pub webhook_allow_private_targets: bool,
    /// Cleared by every change of a store or key, before the change is answered.
    pub auth_cache: std::sync::Arc<super::auth_cache::AuthCache>,
}

pub(super) fn store_not_found() -> AppError {
    AppError::NotFound("Store not found".into())
}

pub(super) fn store_id(raw: &str) -> Result<StoreId, Invalid> {
    id("store_id", raw, StoreId::parse)
}

pub(super) type Reply<T> = Result<Response<T>, Status>;

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
        let store = db::stores::update(&self.db, &id, &patch).await;
        self.auth_cache.clear();
        let store = store?.ok_or_else(store_not_found)?;
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
        let key = db::api_keys::create(&self.db, &store, env, secret.hash(), secret.prefix())
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
        let key = db::api_keys::revoke(&self.db, &key_id).await;
        self.auth_cache.clear();
        let key = key?.ok_or_else(|| AppError::NotFound("API key not found".into()))?;
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
        let id = product_short_id(&req.get_ref().product_id)?;
        let product = catalog::get_product(&self.db, id)
            .await?
            .ok_or_else(product_not_found)?;
        Ok(Response::new(product_to_pb(product)))
    }

    async fn update_product(&self, req: Request<pb::UpdateProductRequest>) -> Reply<pb::Product> {
        platform(&req)?;
        let r = req.into_inner();
        let product = required("product", &r.product)?;
        let id = product_short_id(&product.id).map_err(|e| e.within("product"))?;
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
        let product = product_short_id(&r.product_id)?;
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
        let allow_private = self.webhook_allow_private_targets;
        let url = WebhookUrl::parse(&r.url, env, allow_private)?;
        crate::webhook_dns::check_registration(&url, allow_private).await?;
        let id = WebhookEndpointId::generate();
        // Shown once, in this reply; only its sealed form is stored.
        let secret = generate_secret();
        let sealed = self
            .keys
            .seal(&secret, &db::secrets::endpoint_aad(id.as_str()));
        let endpoint = db::webhooks::create_endpoint(&self.db, &id, &store, env, &url, sealed)
            .await?
            .ok_or_else(store_not_found)?;
        Ok(Response::new(pb::CreateWebhookEndpointResponse {
            environment: convert::stored_environment(&endpoint.environment)?,
            id: endpoint.id,
            url: endpoint.url,
            secret,
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

    // The listing and management RPCs live in `admin_lists` and `admin_webhooks`.

    async fn list_stores(
        &self,
        req: Request<pb::ListStoresRequest>,
    ) -> Reply<pb::ListStoresResponse> {
        admin_lists::list_stores(self, req).await
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Reply<pb::ListApiKeysResponse> {
        admin_lists::list_api_keys(self, req).await
    }

    async fn list_products(
        &self,
        req: Request<pb::ListProductsRequest>,
    ) -> Reply<pb::ListProductsResponse> {
        admin_lists::list_products(self, req).await
    }

    async fn list_coupons(
        &self,
        req: Request<pb::ListCouponsRequest>,
    ) -> Reply<pb::ListCouponsResponse> {
        admin_lists::list_coupons(self, req).await
    }

    async fn update_coupon(&self, req: Request<pb::UpdateCouponRequest>) -> Reply<pb::Coupon> {
        admin_lists::update_coupon(self, req).await
    }

    async fn list_webhook_endpoints(
        &self,
        req: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Reply<pb::ListWebhookEndpointsResponse> {
        admin_webhooks::list(self, req).await
    }

    async fn update_webhook_endpoint(
        &self,
        req: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Reply<pb::WebhookEndpoint> {
        admin_webhooks::update(self, req).await
    }

    async fn delete_webhook_endpoint(
        &self,
        req: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Reply<pb::WebhookEndpoint> {
        admin_webhooks::delete(self, req).await
    }

    async fn rotate_webhook_endpoint_secret(
        &self,
        req: Request<pb::RotateWebhookEndpointSecretRequest>,
    ) -> Reply<pb::RotateWebhookEndpointSecretResponse> {
        admin_webhooks::rotate(self, req).await
    }
}

fn product_not_found() -> AppError {
    AppError::NotFound("Product not found".into())
}
