//! Credentials are cached per replica for a few seconds (src/grpc/auth_cache.rs); a change
//! made anywhere — another replica, an operator's SQL — must reach every replica well
//! before that time runs out, through the `checkout_auth_changes` notification. Each test
//! warms the cache on replica B first, changes the credential elsewhere, and expects B to
//! refuse within a bound shorter than the cache's lifetime.
use crate::{
    fixtures::{probe, shop, Shop},
    helpers::{keyed, slugged, Ctx, TestApp},
    TestFn,
};
use checkout::grpc::auth_cache::TTL;
use std::time::{Duration, Instant};
use tonic::Code;

pub fn postgres_only() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "postgres_only::auth_replicas::revocation_reaches_other_replicas",
            |ctx| Box::pin(revocation_reaches_other_replicas(ctx)),
        ),
        (
            "postgres_only::auth_replicas::operator_sql_reaches_every_replica",
            |ctx| Box::pin(operator_sql_reaches_every_replica(ctx)),
        ),
    ]
}

/// Well under the cache's lifetime: passing within it proves the notification worked.
fn within() -> Duration {
    TTL / 2
}

/// Polls GetSession on `app` until it fails with `code`; panics after `within()`.
async fn refused_soon(app: &TestApp, shop: &Shop, slug: bool, code: Code) {
    let started = Instant::now();
    loop {
        let r = if slug {
            app.checkout()
                .get_session(slugged(probe(), &shop.slug, "test"))
                .await
        } else {
            app.checkout()
                .get_session(keyed(probe(), &shop.test_key, "test"))
                .await
        };
        match r {
            Err(s) if s.code() == code => return,
            Err(s) if s.code() != Code::NotFound => panic!("unexpected {s:?}"),
            _ => {}
        }
        assert!(
            started.elapsed() < within(),
            "still accepted after {:?}",
            within()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Warms replica B's cache with the key and the slug.
async fn warm(b: &TestApp, shop: &Shop) {
    for slug in [false, true] {
        let r = if slug {
            b.checkout()
                .get_session(slugged(probe(), &shop.slug, "test"))
                .await
        } else {
            b.checkout()
                .get_session(keyed(probe(), &shop.test_key, "test"))
                .await
        };
        assert_eq!(
            r.unwrap_err().code(),
            Code::NotFound,
            "accepted before the change"
        );
    }
}

async fn revocation_reaches_other_replicas(ctx: Ctx) {
    let a = TestApp::spawn(&ctx).await;
    let b = a.replica().await;
    let shop = shop(&a).await;
    warm(&b, &shop).await;
    let req = checkout::pb::RevokeApiKeyRequest {
        api_key_id: shop.test_key_id.clone(),
    };
    a.admin().revoke_api_key(a.platform(req)).await.unwrap();
    refused_soon(&b, &shop, false, Code::Unauthenticated).await;
}

async fn operator_sql_reaches_every_replica(ctx: Ctx) {
    let a = TestApp::spawn(&ctx).await;
    let b = a.replica().await;
    let shop = shop(&a).await;
    warm(&a, &shop).await;
    warm(&b, &shop).await;
    a.sql(&format!(
        "UPDATE stores SET active = false WHERE id = '{}'",
        shop.store_id
    ))
    .await;
    for app in [&a, &b] {
        refused_soon(app, &shop, false, Code::PermissionDenied).await;
        refused_soon(app, &shop, true, Code::PermissionDenied).await;
    }
}
