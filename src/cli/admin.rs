//! `checkout admin …`: one subcommand per AdminService RPC, run in-process.
use super::{AdminArgs, AdminOp};
use crate::{
    grpc::{admin::Admin, auth::Platform},
    pb::{self, admin_service_server::AdminService},
};
use anyhow::{bail, Context};
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::future::Future;
use tonic::{Request, Response, Status};

fn env_pb(raw: &str) -> i32 {
    match raw {
        "prod" => pb::Environment::Prod as i32,
        _ => pb::Environment::Test as i32,
    }
}

/// A request as the auth layer would have passed it: with the platform credential.
pub(super) fn platform_request<T>(message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.extensions_mut().insert(Platform);
    req
}

/// Prints a response as canonical protobuf JSON (what grpcurl prints), or fails with the
/// gRPC code and message.
pub(super) async fn print<M: prost::Message>(
    type_name: &str,
    call: impl Future<Output = Result<Response<M>, Status>>,
) -> anyhow::Result<()> {
    let message = match call.await {
        Ok(r) => r.into_inner(),
        Err(s) => bail!("{:?}: {}", s.code(), s.message()),
    };
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).context("descriptor set")?;
    let desc = pool
        .get_message_by_name(type_name)
        .with_context(|| format!("no descriptor for {type_name}"))?;
    let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())?;
    println!("{}", serde_json::to_string_pretty(&dynamic)?);
    Ok(())
}

pub(super) fn mask(paths: Vec<&str>) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.into_iter().map(str::to_owned).collect(),
    })
}

pub async fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    let keys = crate::secrets::load(&args.secrets, &args.db.database_url)?;
    crate::db::Db::migrate(&args.db.database_url).await?;
    let db = crate::db::Db::connect(&args.db.database_url, &args.db.pool_options()).await?;
    let admin = Admin {
        db,
        keys: std::sync::Arc::new(keys),
        webhook_allow_private_targets: args.webhook_allow_private_targets,
        auth_cache: Default::default(),
    };
    match args.op {
        AdminOp::CreateStore {
            slug,
            name,
            active,
            approved_for_prod,
            origins,
        } => {
            let req = pb::CreateStoreRequest {
                slug,
                name,
                active,
                approved_for_prod,
                allowed_return_origins: origins,
            };
            print(
                "checkout.v1.Store",
                admin.create_store(platform_request(req)),
            )
            .await
        }
        AdminOp::GetStore { store_id } => {
            print(
                "checkout.v1.Store",
                admin.get_store(platform_request(pb::GetStoreRequest { store_id })),
            )
            .await
        }
        AdminOp::UpdateStore {
            store_id,
            slug,
            name,
            active,
            approved_for_prod,
            origins,
            clear_origins,
        } => {
            let mut paths = Vec::new();
            let given = [
                ("slug", slug.is_some()),
                ("name", name.is_some()),
                ("active", active.is_some()),
                ("approved_for_prod", approved_for_prod.is_some()),
                (
                    "allowed_return_origins",
                    clear_origins || !origins.is_empty(),
                ),
            ];
            paths.extend(given.iter().filter(|(_, g)| *g).map(|(p, _)| *p));
            let store = pb::Store {
                id: store_id,
                slug: slug.unwrap_or_default(),
                name: name.unwrap_or_default(),
                active: active.unwrap_or_default(),
                approved_for_prod: approved_for_prod.unwrap_or_default(),
                allowed_return_origins: origins,
                created_at: None,
            };
            let req = pb::UpdateStoreRequest {
                store: Some(store),
                update_mask: mask(paths),
            };
            print(
                "checkout.v1.Store",
                admin.update_store(platform_request(req)),
            )
            .await
        }
        AdminOp::CreateApiKey {
            store_id,
            environment,
        } => {
            let req = pb::CreateApiKeyRequest {
                store_id,
                environment: env_pb(&environment),
            };
            print(
                "checkout.v1.CreateApiKeyResponse",
                admin.create_api_key(platform_request(req)),
            )
            .await
        }
        AdminOp::RevokeApiKey { api_key_id } => {
            let req = pb::RevokeApiKeyRequest { api_key_id };
            print(
                "checkout.v1.ApiKey",
                admin.revoke_api_key(platform_request(req)),
            )
            .await
        }
        AdminOp::CreateProduct {
            store_id,
            name,
            description,
            requires_server_selection,
        } => {
            let req = pb::CreateProductRequest {
                store_id,
                name,
                description,
                requires_server_selection,
            };
            print(
                "checkout.v1.Product",
                admin.create_product(platform_request(req)),
            )
            .await
        }
        AdminOp::GetProduct { product_id } => {
            let req = pb::GetProductRequest { product_id };
            print(
                "checkout.v1.Product",
                admin.get_product(platform_request(req)),
            )
            .await
        }
        AdminOp::UpdateProduct {
            product_id,
            name,
            description,
            requires_server_selection,
            active,
        } => {
            let given = [
                ("name", name.is_some()),
                ("description", description.is_some()),
                (
                    "requires_server_selection",
                    requires_server_selection.is_some(),
                ),
                ("active", active.is_some()),
            ];
            let paths = given.iter().filter(|(_, g)| *g).map(|(p, _)| *p).collect();
            let product = pb::Product {
                id: product_id,
                name: name.unwrap_or_default(),
                description: description.unwrap_or_default(),
                requires_server_selection: requires_server_selection.unwrap_or_default(),
                active: active.unwrap_or_default(),
                ..Default::default()
            };
            let req = pb::UpdateProductRequest {
                product: Some(product),
                update_mask: mask(paths),
            };
            print(
                "checkout.v1.Product",
                admin.update_product(platform_request(req)),
            )
            .await
        }
        AdminOp::CreateProductVersion {
            product_id,
            prices,
            billing_period,
            trial_days,
        } => {
            let billing_period = match billing_period.as_str() {
                "month" => pb::BillingPeriod::Month,
                "year" => pb::BillingPeriod::Year,
                _ => pb::BillingPeriod::OneTime,
            } as i32;
            let req = pb::CreateProductVersionRequest {
                product_id,
                prices,
                billing_period,
                trial_days,
            };
            print(
                "checkout.v1.ProductVersion",
                admin.create_product_version(platform_request(req)),
            )
            .await
        }
        AdminOp::ActivateProductVersion {
            product_version_id,
            environment,
        } => {
            let req = pb::ActivateProductVersionRequest {
                product_version_id,
                environment: env_pb(&environment),
            };
            print(
                "checkout.v1.ProductVersion",
                admin.activate_product_version(platform_request(req)),
            )
            .await
        }
        AdminOp::CreateCoupon {
            store_id,
            code,
            percent_off,
            amount_off,
            currency,
            expires_at,
            max_redemptions,
            minimum_amount,
        } => {
            use pb::create_coupon_request::Discount;
            let discount = percent_off
                .map(Discount::PercentOff)
                .or(amount_off.map(Discount::AmountOff));
            let req = pb::CreateCouponRequest {
                store_id,
                code,
                discount,
                currency,
                expires_at,
                max_redemptions,
                minimum_amount,
            };
            print(
                "checkout.v1.Coupon",
                admin.create_coupon(platform_request(req)),
            )
            .await
        }
        AdminOp::CreateWebhookEndpoint {
            store_id,
            environment,
            url,
        } => {
            let req = pb::CreateWebhookEndpointRequest {
                store_id,
                environment: env_pb(&environment),
                url,
            };
            print(
                "checkout.v1.CreateWebhookEndpointResponse",
                admin.create_webhook_endpoint(platform_request(req)),
            )
            .await
        }
        AdminOp::ListWebhookDeliveries {
            store_id,
            endpoint_id,
            page_size,
            page_token,
        } => {
            let req = pb::ListWebhookDeliveriesRequest {
                store_id,
                endpoint_id,
                page_size,
                page_token,
            };
            print(
                "checkout.v1.ListWebhookDeliveriesResponse",
                admin.list_webhook_deliveries(platform_request(req)),
            )
            .await
        }
        AdminOp::More(op) => super::admin_more::run(&admin, op).await,
    }
}
