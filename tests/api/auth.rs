//! The auth matrix of SPEC section 3, through the real auth layer.
use crate::{
    fixtures::{probe, shop, shop_with},
    helpers::{assert_status, bad_request_fields, keyed, slugged, with_md, Ctx, TestApp},
};
use checkout::pb;
use tonic::Code;

const NOT_FOUND: &str = "Session not found";

pub async fn no_credentials_is_unauthenticated(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let req = with_md(probe(), &[("x-context-environment", "test")]);
    assert_status(
        app.checkout().get_session(req).await,
        Code::Unauthenticated,
        "Unauthorized",
    );
}

pub async fn malformed_and_unknown_keys_are_unauthenticated(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop(&app).await;
    // A well-formed key that was never issued, keys of the wrong shape, and wrong schemes.
    let unknown = format!("sk_test_{}", checkout::domain::ids::random_base62(43));
    let truncated = &shop.test_key[..shop.test_key.len() - 1];
    let headers = [
        format!("Bearer {unknown}"),
        format!("Bearer {truncated}"),
        "Bearer sk_test_abc".to_string(),
        "Bearer pk_test_abc".to_string(),
        format!("Basic {}", shop.test_key),
        shop.test_key.clone(),
        "Bearer ".to_string(),
    ];
    for auth in headers {
        let req = with_md(
            probe(),
            &[("authorization", &auth), ("x-context-environment", "test")],
        );
        let status = assert_status(
            app.checkout().get_session(req).await,
            Code::Unauthenticated,
            "Unauthorized",
        );
        assert!(!status.message().contains("sk_"), "no secret echoed");
    }
    // The real key passes authentication and reaches the handler.
    let ok = app
        .checkout()
        .get_session(keyed(probe(), &shop.test_key, "test"))
        .await;
    assert_status(ok, Code::NotFound, NOT_FOUND);
}

pub async fn revoked_key_is_unauthenticated(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop(&app).await;
    let before = app
        .checkout()
        .get_session(keyed(probe(), &shop.test_key, "test"))
        .await;
    assert_status(before, Code::NotFound, NOT_FOUND);
    let req = pb::RevokeApiKeyRequest {
        api_key_id: shop.test_key_id.clone(),
    };
    let revoked = app
        .admin()
        .revoke_api_key(app.platform(req))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at.is_some());
    let after = app
        .checkout()
        .get_session(keyed(probe(), &shop.test_key, "test"))
        .await;
    assert_status(after, Code::Unauthenticated, "Unauthorized");
    // The store's other key is unaffected.
    let other = app
        .checkout()
        .get_session(keyed(probe(), &shop.prod_key, "prod"))
        .await;
    assert_status(other, Code::NotFound, NOT_FOUND);
}

pub async fn key_of_other_environment_is_permission_denied(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop(&app).await;
    let r = app
        .checkout()
        .get_session(keyed(probe(), &shop.test_key, "prod"))
        .await;
    assert_status(
        r,
        Code::PermissionDenied,
        "This API key belongs to the test environment, but x-context-environment is prod",
    );
    let r = app
        .checkout()
        .get_session(keyed(probe(), &shop.prod_key, "test"))
        .await;
    assert_status(
        r,
        Code::PermissionDenied,
        "This API key belongs to the prod environment, but x-context-environment is test",
    );
}

pub async fn environment_header_is_required(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop(&app).await;
    let auth = format!("Bearer {}", shop.test_key);
    let message = "Missing or invalid header: x-context-environment";
    let missing = with_md(probe(), &[("authorization", &auth)]);
    let status = assert_status(
        app.checkout().get_session(missing).await,
        Code::InvalidArgument,
        message,
    );
    assert_eq!(bad_request_fields(&status), ["x-context-environment"]);
    for bad in ["TEST", "staging", "", " test"] {
        let req = with_md(
            probe(),
            &[("authorization", &auth), ("x-context-environment", bad)],
        );
        assert_status(
            app.checkout().get_session(req).await,
            Code::InvalidArgument,
            message,
        );
    }
    // Slug auth needs it too.
    let req = with_md(probe(), &[("x-store-slug", &shop.slug)]);
    assert_status(
        app.checkout().get_session(req).await,
        Code::InvalidArgument,
        message,
    );
}

pub async fn inactive_store_is_permission_denied(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop_with(&app, false, true).await;
    let r = app
        .checkout()
        .get_session(keyed(probe(), &shop.test_key, "test"))
        .await;
    assert_status(r, Code::PermissionDenied, "Store is not active");
    let r = app
        .checkout()
        .get_session(slugged(probe(), &shop.slug, "test"))
        .await;
    assert_status(r, Code::PermissionDenied, "Store is not active");
    // Activating the store lets the same key in.
    let update = pb::UpdateStoreRequest {
        store: Some(pb::Store {
            id: shop.store_id.clone(),
            active: true,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["active".into()],
        }),
    };
    app.admin()
        .update_store(app.platform(update))
        .await
        .unwrap();
    let r = app
        .checkout()
        .get_session(keyed(probe(), &shop.test_key, "test"))
        .await;
    assert_status(r, Code::NotFound, NOT_FOUND);
}

pub async fn prod_requires_approval(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop_with(&app, true, false).await;
    let message = "Store is not approved for production payments";
    let r = app
        .checkout()
        .get_session(keyed(probe(), &shop.prod_key, "prod"))
        .await;
    assert_status(r, Code::PermissionDenied, message);
    let r = app
        .checkout()
        .get_session(slugged(probe(), &shop.slug, "prod"))
        .await;
    assert_status(r, Code::PermissionDenied, message);
    // Test is open without approval.
    let r = app
        .checkout()
        .get_session(keyed(probe(), &shop.test_key, "test"))
        .await;
    assert_status(r, Code::NotFound, NOT_FOUND);
}

pub async fn store_slug_auth_rules(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop(&app).await;
    // A known slug passes; an unknown one is NOT_FOUND `Store not found`.
    let r = app
        .checkout()
        .get_session(slugged(probe(), &shop.slug, "test"))
        .await;
    assert_status(r, Code::NotFound, NOT_FOUND);
    let r = app
        .checkout()
        .get_session(slugged(probe(), "no-such-store", "test"))
        .await;
    assert_status(r, Code::NotFound, "Store not found");
    // API-key-only methods refuse a slug before anything else.
    let list = slugged(pb::ListSessionsRequest::default(), &shop.slug, "test");
    let status = app.checkout().list_sessions(list).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("requires a secret API key"),
        "{status:?}"
    );
    let expire = slugged(
        pb::ExpireSessionRequest {
            session_id: "cs_x".into(),
        },
        &shop.slug,
        "test",
    );
    assert_eq!(
        app.checkout()
            .expire_session(expire)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // A key wins over a slug when both are sent: a bad key is not rescued by a good slug.
    let both = with_md(
        probe(),
        &[
            ("authorization", "Bearer sk_test_nope"),
            ("x-store-slug", &shop.slug),
            ("x-context-environment", "test"),
        ],
    );
    assert_status(
        app.checkout().get_session(both).await,
        Code::Unauthenticated,
        "Unauthorized",
    );
}

pub async fn platform_token_guards_admin_and_hosted(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let shop = shop(&app).await;
    let get = || pb::GetStoreRequest {
        store_id: shop.store_id.clone(),
    };
    let wrong = [
        None,
        Some("Bearer not-the-token".to_string()),
        Some(format!("Bearer {}", shop.test_key)),
        Some(format!("Bearer {}x", app.platform_token)),
        Some(app.platform_token.clone()),
    ];
    for auth in &wrong {
        let md: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = app.admin().get_store(with_md(get(), &md)).await;
        assert_status(r, Code::Unauthenticated, "Unauthorized");
        let cancel = pb::CancelSessionRequest {
            session_id: "cs_x".into(),
        };
        let r = app.hosted().cancel_session(with_md(cancel, &md)).await;
        assert_status(r, Code::Unauthenticated, "Unauthorized");
    }
    let store = app
        .admin()
        .get_store(app.platform(get()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(store.id, shop.store_id);
    // The platform token is not a merchant credential.
    let r = app
        .checkout()
        .get_session(keyed(probe(), &app.platform_token, "test"))
        .await;
    assert_status(r, Code::Unauthenticated, "Unauthorized");
}
