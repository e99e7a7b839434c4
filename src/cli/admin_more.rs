//! `checkout admin …` for the listing and management RPCs: the subcommands and how each
//! becomes a request (flattened into `AdminOp`, so they sit beside the others in --help).
use super::admin::{mask, platform_request, print};
use crate::{
    grpc::admin::Admin,
    pb::{self, admin_service_server::AdminService},
};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum MoreOp {
    /// Lists every store, newest first.
    ListStores {
        #[command(flatten)]
        page: Page,
    },
    /// Lists a store's API keys with their prefixes, newest first; never a secret.
    ListApiKeys {
        #[arg(long)]
        store_id: String,
        #[command(flatten)]
        page: Page,
    },
    /// Lists a store's products, newest first.
    ListProducts {
        #[arg(long)]
        store_id: String,
        #[command(flatten)]
        page: Page,
    },
    /// Lists a store's coupons, newest first.
    ListCoupons {
        #[arg(long)]
        store_id: String,
        #[command(flatten)]
        page: Page,
    },
    /// Activates or deactivates a coupon (`--active false`: new sessions refuse its code).
    UpdateCoupon {
        #[arg(long)]
        coupon_id: String,
        #[arg(long, action = clap::ArgAction::Set)]
        active: bool,
    },
    /// Lists a store's webhook endpoints, newest first; never a secret.
    ListWebhookEndpoints {
        #[arg(long)]
        store_id: String,
        #[command(flatten)]
        page: Page,
    },
    /// Changes only what is given: URL, event types, disabled.
    UpdateWebhookEndpoint {
        #[arg(long)]
        endpoint_id: String,
        #[arg(long)]
        url: Option<String>,
        /// Subscribe to this event type only (repeatable): order.completed,
        /// checkout.session.expired.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// Subscribe to every event type.
        #[arg(long, conflicts_with = "event_types")]
        all_event_types: bool,
        /// `true` stops deliveries (pending ones are dropped); `false` resumes them.
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Deletes a webhook endpoint: no more deliveries; its delivery log stays.
    DeleteWebhookEndpoint {
        #[arg(long)]
        endpoint_id: String,
    },
    /// Replaces an endpoint's signing secret; prints the new one once.
    RotateWebhookEndpointSecret {
        #[arg(long)]
        endpoint_id: String,
        /// How long the old secret keeps signing too, in seconds with an `s` suffix (e.g.
        /// 3600s); at most 604800s (7 days). Default 86400s.
        #[arg(long)]
        overlap: Option<prost_types::Duration>,
    },
}

/// Paging flags of the list subcommands.
#[derive(clap::Args, Debug)]
pub struct Page {
    /// 1 to 100 (0: 20).
    #[arg(long, default_value_t = 0)]
    page_size: i32,
    /// The next_page_token printed by the previous page.
    #[arg(long, default_value = "")]
    page_token: String,
}

pub async fn run(admin: &Admin, op: MoreOp) -> anyhow::Result<()> {
    match op {
        MoreOp::ListStores { page } => {
            let req = pb::ListStoresRequest {
                page_size: page.page_size,
                page_token: page.page_token,
            };
            let call = admin.list_stores(platform_request(req));
            print("checkout.v1.ListStoresResponse", call).await
        }
        MoreOp::ListApiKeys { store_id, page } => {
            let req = pb::ListApiKeysRequest {
                store_id,
                page_size: page.page_size,
                page_token: page.page_token,
            };
            let call = admin.list_api_keys(platform_request(req));
            print("checkout.v1.ListApiKeysResponse", call).await
        }
        MoreOp::ListProducts { store_id, page } => {
            let req = pb::ListProductsRequest {
                store_id,
                page_size: page.page_size,
                page_token: page.page_token,
            };
            let call = admin.list_products(platform_request(req));
            print("checkout.v1.ListProductsResponse", call).await
        }
        MoreOp::ListCoupons { store_id, page } => {
            let req = pb::ListCouponsRequest {
                store_id,
                page_size: page.page_size,
                page_token: page.page_token,
            };
            let call = admin.list_coupons(platform_request(req));
            print("checkout.v1.ListCouponsResponse", call).await
        }
        MoreOp::UpdateCoupon { coupon_id, active } => {
            let req = pb::UpdateCouponRequest {
                coupon: Some(pb::Coupon {
                    id: coupon_id,
                    active,
                    ..Default::default()
                }),
                update_mask: mask(vec!["active"]),
            };
            let call = admin.update_coupon(platform_request(req));
            print("checkout.v1.Coupon", call).await
        }
        MoreOp::ListWebhookEndpoints { store_id, page } => {
            let req = pb::ListWebhookEndpointsRequest {
                store_id,
                page_size: page.page_size,
                page_token: page.page_token,
            };
            let call = admin.list_webhook_endpoints(platform_request(req));
            print("checkout.v1.ListWebhookEndpointsResponse", call).await
        }
        MoreOp::UpdateWebhookEndpoint {
            endpoint_id,
            url,
            event_types,
            all_event_types,
            disabled,
        } => {
            let given = [
                ("url", url.is_some()),
                ("event_types", all_event_types || !event_types.is_empty()),
                ("disabled", disabled.is_some()),
            ];
            let paths = given.iter().filter(|(_, g)| *g).map(|(p, _)| *p).collect();
            let req = pb::UpdateWebhookEndpointRequest {
                webhook_endpoint: Some(pb::WebhookEndpoint {
                    id: endpoint_id,
                    url: url.unwrap_or_default(),
                    event_types,
                    disabled: disabled.unwrap_or_default(),
                    ..Default::default()
                }),
                update_mask: mask(paths),
            };
            let call = admin.update_webhook_endpoint(platform_request(req));
            print("checkout.v1.WebhookEndpoint", call).await
        }
        MoreOp::DeleteWebhookEndpoint { endpoint_id } => {
            let req = pb::DeleteWebhookEndpointRequest { endpoint_id };
            let call = admin.delete_webhook_endpoint(platform_request(req));
            print("checkout.v1.WebhookEndpoint", call).await
        }
        MoreOp::RotateWebhookEndpointSecret {
            endpoint_id,
            overlap,
        } => {
            let req = pb::RotateWebhookEndpointSecretRequest {
                endpoint_id,
                overlap,
            };
            let call = admin.rotate_webhook_endpoint_secret(platform_request(req));
            print("checkout.v1.RotateWebhookEndpointSecretResponse", call).await
        }
    }
}
