//! AdminService lists (stores, API keys, products, coupons) with paging and validation,
//! and UpdateCoupon deactivating a coupon.
use crate::{
    fixtures::{catalog, coupon, create, create_key, create_store, line, order},
    helpers::{assert_status, bad_request_fields, Ctx, TestApp},
    lifecycle::complete,
};
use checkout::{
    domain::ids::{CouponId, StoreId},
    pb,
};
use prost::Message;
use prost_types::FieldMask;
use tonic::Code;

/// Pages through a list with `page_size` until the last page; the items in order.
async fn all_pages<T, F, Fut>(page_size: i32, mut call: F) -> Vec<T>
where
    F: FnMut(i32, String) -> Fut,
    Fut: std::future::Future<Output = (Vec<T>, String)>,
{
    let (mut items, mut token) = (Vec::new(), String::new());
    for _ in 0..100 {
        let (page, next) = call(page_size, token).await;
        assert!(page.len() <= page_size as usize, "page within page_size");
        items.extend(page);
        if next.is_empty() {
            return items;
        }
        token = next;
    }
    panic!("paging did not end");
}

pub async fn list_stores_pages_newest_first(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(create_store(&app, true, false).await);
    }
    let listed = all_pages(2, |page_size, page_token| {
        let mut admin = app.admin();
        let req = app.platform(pb::ListStoresRequest {
            page_size,
            page_token,
        });
        async move {
            let r = admin.list_stores(req).await.unwrap().into_inner();
            (r.stores, r.next_page_token)
        }
    })
    .await;
    made.reverse();
    // Only this test's stores are in its database: exactly them, newest first.
    assert_eq!(listed, made);
    let r = app
        .admin()
        .list_stores(app.platform(pb::ListStoresRequest {
            page_size: 101,
            ..Default::default()
        }))
        .await;
    let s = assert_status(r, Code::InvalidArgument, "page_size must be 0 to 100");
    assert_eq!(bad_request_fields(&s), ["page_size"]);
    let r = app
        .admin()
        .list_stores(app.platform(pb::ListStoresRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        }))
        .await;
    assert_status(r, Code::InvalidArgument, "Invalid page_token");
}

pub async fn list_api_keys_never_shows_a_secret(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let test = create_key(&app, &store.id, pb::Environment::Test).await;
    let prod = create_key(&app, &store.id, pb::Environment::Prod).await;
    let third = create_key(&app, &store.id, pb::Environment::Test).await;
    app.admin()
        .revoke_api_key(app.platform(pb::RevokeApiKeyRequest {
            api_key_id: third.api_key_id.clone(),
        }))
        .await
        .unwrap();
    let list = |page_size: i32, page_token: String| {
        let mut admin = app.admin();
        let req = app.platform(pb::ListApiKeysRequest {
            store_id: store.id.clone(),
            page_size,
            page_token,
        });
        async move { admin.list_api_keys(req).await.map(|r| r.into_inner()) }
    };
    let first = list(2, String::new()).await.unwrap();
    let second = list(2, first.next_page_token.clone()).await.unwrap();
    assert!(second.next_page_token.is_empty());
    let keys: Vec<&pb::ApiKey> = first.api_keys.iter().chain(&second.api_keys).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, [&third.api_key_id, &prod.api_key_id, &test.api_key_id]);
    for (key, made) in keys.iter().zip([&third, &prod, &test]) {
        assert_eq!(key.secret_prefix.len(), "sk_test_".len() + 4);
        assert!(
            made.secret.starts_with(&key.secret_prefix),
            "a prefix of the key"
        );
        assert_eq!(
            key.revoked_at.is_some(),
            made.api_key_id == third.api_key_id
        );
    }
    // Neither a secret nor its stored hash appears anywhere in the responses' bytes.
    for page in [&first, &second] {
        let bytes = page.encode_to_vec();
        let text = String::from_utf8_lossy(&bytes);
        for made in [&test, &prod, &third] {
            let hash = checkout::domain::store::hash_secret(&made.secret);
            assert!(!text.contains(&made.secret) && !text.contains(&hash));
            assert!(!text.contains(&made.secret[..made.secret.len() - 10]));
        }
    }
    let r = list(0, first.next_page_token.clone()).await;
    let _ = r.expect("a token works with the same filters whatever the size");
    let other = app
        .admin()
        .list_coupons(app.platform(pb::ListCouponsRequest {
            store_id: store.id.clone(),
            page_token: first.next_page_token.clone(),
            ..Default::default()
        }))
        .await;
    assert_status(
        other,
        Code::InvalidArgument,
        "page_token was made for other filters; repeat the request's filters",
    );
    let r = app
        .admin()
        .list_api_keys(app.platform(pb::ListApiKeysRequest {
            store_id: StoreId::generate().to_string(),
            ..Default::default()
        }))
        .await;
    assert_status(r, Code::NotFound, "Store not found");
    let r = app
        .admin()
        .list_api_keys(app.platform(pb::ListApiKeysRequest {
            store_id: "nope".into(),
            ..Default::default()
        }))
        .await;
    assert_status(r, Code::InvalidArgument, "store_id is not a valid id");
}

pub async fn list_products_matches_get_product(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let listed = all_pages(4, |page_size, page_token| {
        let mut admin = app.admin();
        let req = app.platform(pb::ListProductsRequest {
            store_id: c.shop.store_id.clone(),
            page_size,
            page_token,
        });
        async move {
            let r = admin.list_products(req).await.unwrap().into_inner();
            (r.products, r.next_page_token)
        }
    })
    .await;
    let made = [
        &c.archived,
        &c.unreleased,
        &c.monthly,
        &c.free,
        &c.vip,
        &c.widget,
    ];
    let ids: Vec<&String> = listed.iter().map(|p| &p.id).collect();
    assert_eq!(ids, made);
    for p in &listed {
        let got = app
            .admin()
            .get_product(app.platform(pb::GetProductRequest {
                product_id: p.id.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got, p, "the list shows what GetProduct shows");
    }
    assert!(listed.iter().any(|p| !p.active && p.id == c.archived));
    assert!(listed
        .iter()
        .any(|p| p.active_prod_version_id.is_empty() && p.id == c.vip));
    // Another store has none.
    let other = create_store(&app, true, false).await;
    let r = app
        .admin()
        .list_products(app.platform(pb::ListProductsRequest {
            store_id: other.id,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.products.is_empty() && r.next_page_token.is_empty());
}

fn deactivate(id: &str, active: bool) -> pb::UpdateCouponRequest {
    pb::UpdateCouponRequest {
        coupon: Some(pb::Coupon {
            id: id.into(),
            active,
            // Not in the mask: ignored.
            code: "IGNORED".into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["active".into()],
        }),
    }
}

/// A deactivated coupon is refused like an unknown code; a session that already holds it
/// completes with its discount; reactivated, it is accepted again.
pub async fn deactivated_coupon_is_refused(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let percent = |code: &str| pb::CreateCouponRequest {
        code: code.into(),
        discount: Some(pb::create_coupon_request::Discount::PercentOff(10)),
        ..Default::default()
    };
    let save = coupon(&app, &c.shop.store_id, percent("SAVE")).await;
    let other = coupon(&app, &c.shop.store_id, percent("OTHER")).await;
    assert!(save.active && other.active);
    let with_code = |code: &str| pb::CreateSessionRequest {
        coupon_code: code.into(),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let held = create(&app, &c, with_code("save"))
        .await
        .unwrap()
        .into_inner();
    let held = held.session.unwrap();
    assert!(held.amount_discount > 0);

    let off = app
        .admin()
        .update_coupon(app.platform(deactivate(&save.id, false)))
        .await
        .unwrap()
        .into_inner();
    assert!(!off.active);
    assert_eq!(
        (off.code.as_str(), off.id.as_str()),
        ("SAVE", save.id.as_str())
    );
    let r = create(&app, &c, with_code("SAVE")).await;
    assert_status(r, Code::InvalidArgument, "couponCode: SAVE (not found)");
    let done = complete(&app, &held.id, "pay_held").await.unwrap();
    assert_eq!(
        done.amount_discount, held.amount_discount,
        "the held reservation stays valid"
    );
    let listed = app
        .admin()
        .list_coupons(app.platform(pb::ListCouponsRequest {
            store_id: c.shop.store_id.clone(),
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.coupons, [other]);
    let rest = app
        .admin()
        .list_coupons(app.platform(pb::ListCouponsRequest {
            store_id: c.shop.store_id.clone(),
            page_size: 1,
            page_token: listed.next_page_token,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.coupons.len(), 1);
    assert_eq!(
        (rest.coupons[0].active, &rest.coupons[0].id),
        (false, &save.id)
    );
    assert!(rest.next_page_token.is_empty());

    let on = app
        .admin()
        .update_coupon(app.platform(deactivate(&save.id, true)))
        .await
        .unwrap()
        .into_inner();
    assert!(on.active);
    let again = create(&app, &c, with_code("SAVE"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.session.unwrap().amount_discount, held.amount_discount);

    // Validation.
    let mut no_mask = deactivate(&save.id, false);
    no_mask.update_mask = None;
    let r = app.admin().update_coupon(app.platform(no_mask)).await;
    assert_status(
        r,
        Code::InvalidArgument,
        "update_mask must name the fields to change",
    );
    let mut code_path = deactivate(&save.id, false);
    code_path.update_mask = Some(FieldMask {
        paths: vec!["code".into()],
    });
    let r = app.admin().update_coupon(app.platform(code_path)).await;
    let s = r.expect_err("code is immutable");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("\"code\""), "{s:?}");
    let unknown = CouponId::generate().to_string();
    let r = app
        .admin()
        .update_coupon(app.platform(deactivate(&unknown, false)))
        .await;
    assert_status(r, Code::NotFound, "Coupon not found");
    let r = app
        .admin()
        .update_coupon(app.platform(deactivate("cpn_x", false)))
        .await;
    assert_status(r, Code::InvalidArgument, "coupon.id is not a valid id");
    let r = app
        .admin()
        .update_coupon(app.platform(pb::UpdateCouponRequest::default()))
        .await;
    assert_status(r, Code::InvalidArgument, "coupon is required");
}
