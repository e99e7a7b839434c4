//! AdminService lists of stores, API keys, products and coupons, and UpdateCoupon. The
//! handlers are called from `admin.rs`, which holds the one `AdminService` impl.
use super::{
    admin::{store_id, store_not_found, Admin, Reply},
    admin_pb::{api_key_to_pb, coupon_to_pb, product_to_pb, store_to_pb},
    auth::platform,
    convert::{self, id, mask_paths, required},
    page_token::{filters_digest, PageToken},
};
use crate::{
    db::{admin_lists, sessions::ListCursor},
    domain::{ids::CouponId, ids::StoreId, Invalid},
    error::{AppError, AppResult},
    pb,
};
use tonic::{Request, Response};

/// A list request's size and starting point. The token is bound to the RPC and its store,
/// so a token of one list cannot page another.
pub(super) struct Paging {
    pub size: i64,
    pub after: Option<ListCursor>,
    digest: String,
}

impl Paging {
    pub fn parse(rpc: &str, store: &str, page_size: i32, token: &str) -> Result<Paging, Invalid> {
        let digest = filters_digest(&[rpc, store]);
        let size = convert::page_size(page_size)?;
        let after = PageToken::decode(token, &digest)?.map(|t| ListCursor {
            created_at: t.at,
            id: t.id,
        });
        Ok(Paging {
            size,
            after,
            digest,
        })
    }

    pub fn next_token(self, next: Option<ListCursor>) -> String {
        next.map(|c| PageToken::new(c.created_at, c.id, self.digest).encode())
            .unwrap_or_default()
    }
}

/// The store of a per-store list, and its paging.
fn store_paging(
    rpc: &str,
    raw_store: &str,
    size: i32,
    token: &str,
) -> Result<(StoreId, Paging), Invalid> {
    let store = store_id(raw_store)?;
    let paging = Paging::parse(rpc, store.as_str(), size, token)?;
    Ok((store, paging))
}

pub async fn list_stores(
    a: &Admin,
    req: Request<pb::ListStoresRequest>,
) -> Reply<pb::ListStoresResponse> {
    platform(&req)?;
    let r = req.into_inner();
    let paging = Paging::parse("ListStores", "", r.page_size, &r.page_token)?;
    let (stores, next) =
        admin_lists::list_stores(&a.db, paging.after.as_ref(), paging.size).await?;
    Ok(Response::new(pb::ListStoresResponse {
        stores: stores.into_iter().map(store_to_pb).collect(),
        next_page_token: paging.next_token(next),
    }))
}

pub async fn list_api_keys(
    a: &Admin,
    req: Request<pb::ListApiKeysRequest>,
) -> Reply<pb::ListApiKeysResponse> {
    platform(&req)?;
    let r = req.into_inner();
    let (store, paging) = store_paging("ListApiKeys", &r.store_id, r.page_size, &r.page_token)?;
    let (keys, next) =
        admin_lists::list_api_keys(&a.db, &store, paging.after.as_ref(), paging.size)
            .await?
            .ok_or_else(store_not_found)?;
    Ok(Response::new(pb::ListApiKeysResponse {
        api_keys: keys
            .into_iter()
            .map(api_key_to_pb)
            .collect::<AppResult<_>>()?,
        next_page_token: paging.next_token(next),
    }))
}

pub async fn list_products(
    a: &Admin,
    req: Request<pb::ListProductsRequest>,
) -> Reply<pb::ListProductsResponse> {
    platform(&req)?;
    let r = req.into_inner();
    let (store, paging) = store_paging("ListProducts", &r.store_id, r.page_size, &r.page_token)?;
    // Product cursors carry the numeric id; anything else was not made here.
    let after = paging
        .after
        .as_ref()
        .map(|c| {
            c.id.parse::<i64>()
                .map(|id| (c.created_at, id))
                .map_err(|_| Invalid::field("page_token", "Invalid page_token"))
        })
        .transpose()?;
    let (products, next) = admin_lists::list_products(&a.db, &store, after, paging.size)
        .await?
        .ok_or_else(store_not_found)?;
    Ok(Response::new(pb::ListProductsResponse {
        products: products.into_iter().map(product_to_pb).collect(),
        next_page_token: paging.next_token(next),
    }))
}

pub async fn list_coupons(
    a: &Admin,
    req: Request<pb::ListCouponsRequest>,
) -> Reply<pb::ListCouponsResponse> {
    platform(&req)?;
    let r = req.into_inner();
    let (store, paging) = store_paging("ListCoupons", &r.store_id, r.page_size, &r.page_token)?;
    let (coupons, next) =
        admin_lists::list_coupons(&a.db, &store, paging.after.as_ref(), paging.size)
            .await?
            .ok_or_else(store_not_found)?;
    Ok(Response::new(pb::ListCouponsResponse {
        coupons: coupons.into_iter().map(coupon_to_pb).collect(),
        next_page_token: paging.next_token(next),
    }))
}

pub async fn update_coupon(a: &Admin, req: Request<pb::UpdateCouponRequest>) -> Reply<pb::Coupon> {
    platform(&req)?;
    let r = req.into_inner();
    let coupon = required("coupon", &r.coupon)?;
    let coupon_id = id("coupon.id", &coupon.id, CouponId::parse)?;
    // `active` is the only path, so the mask check is all the parsing there is.
    mask_paths(&r.update_mask, &["active"])?;
    let row = admin_lists::set_coupon_active(&a.db, &coupon_id, coupon.active)
        .await?
        .ok_or_else(|| AppError::NotFound("Coupon not found".into()))?;
    Ok(Response::new(coupon_to_pb(row)))
}
