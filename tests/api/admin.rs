//! AdminService stores, keys and webhook endpoints, and the same through the CLI.
use crate::{
    fixtures::{create_store, probe, shop, unique_slug},
    helpers::{assert_status, bad_request_fields, keyed, Ctx, Options, TestApp},
};
use checkout::pb;
use prost_types::FieldMask;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

pub async fn store_round_trip(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let slug = unique_slug("rt");
    let req = pb::CreateStoreRequest {
        slug: slug.clone(),
        name: "  Round Trip  ".into(),
        active: true,
        approved_for_prod: false,
        // Normalized to the browser's origin form, de-duplicated and sorted.
        allowed_return_origins: vec![
            "HTTPS://Shop.Example.com:443/".into(),
            "https://shop.example.com".into(),
            "http://localhost:3000".into(),
        ],
    };
    let created = app
        .admin()
        .create_store(app.platform(req))
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("st_"));
    assert_eq!(created.name, "Round Trip");
    assert_eq!(
        created.allowed_return_origins,
        ["http://localhost:3000", "https://shop.example.com"]
    );
    let fetched = app
        .admin()
        .get_store(app.platform(pb::GetStoreRequest {
            store_id: created.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);

    // Only the masked fields change.
    let update = pb::UpdateStoreRequest {
        store: Some(pb::Store {
            id: created.id.clone(),
            name: "Renamed".into(),
            approved_for_prod: true,
            active: false, // not in the mask: ignored
            allowed_return_origins: vec!["https://new.example.com".into()],
            ..Default::default()
        }),
        update_mask: mask(&["name", "approved_for_prod", "allowed_return_origins"]),
    };
    let updated = app
        .admin()
        .update_store(app.platform(update))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "Renamed");
    assert!(updated.approved_for_prod && updated.active);
    assert_eq!(updated.slug, slug);
    assert_eq!(updated.allowed_return_origins, ["https://new.example.com"]);

    // A slug is unique.
    let dup = pb::CreateStoreRequest {
        slug,
        name: "Other".into(),
        ..Default::default()
    };
    assert_status(
        app.admin().create_store(app.platform(dup)).await,
        Code::AlreadyExists,
        "A store with this slug already exists",
    );
}

pub async fn store_validation(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let base = || pb::CreateStoreRequest {
        slug: unique_slug("v"),
        name: "Shop".into(),
        ..Default::default()
    };
    for slug in [
        "ab",
        "Upper",
        "-lead",
        "trail-",
        "under_score",
        &"x".repeat(64),
    ] {
        let req = pb::CreateStoreRequest {
            slug: slug.into(),
            ..base()
        };
        let status = app
            .admin()
            .create_store(app.platform(req))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{slug}");
        assert_eq!(bad_request_fields(&status), ["slug"]);
    }
    let req = pb::CreateStoreRequest {
        name: "   ".into(),
        ..base()
    };
    assert_status(
        app.admin().create_store(app.platform(req)).await,
        Code::InvalidArgument,
        "name is required",
    );
    for origin in [
        "http://shop.example.com",
        "https://shop.example.com/checkout",
        "not a url",
        "ftp://x.example",
    ] {
        let req = pb::CreateStoreRequest {
            allowed_return_origins: vec![origin.into()],
            ..base()
        };
        let status = app
            .admin()
            .create_store(app.platform(req))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{origin}");
        assert_eq!(
            bad_request_fields(&status),
            ["allowed_return_origins[0]"],
            "{origin}"
        );
    }
    let store = create_store(&app, true, false).await;
    let update = |paths: &[&str]| pb::UpdateStoreRequest {
        store: Some(pb::Store {
            id: store.id.clone(),
            ..Default::default()
        }),
        update_mask: mask(paths),
    };
    let r = app
        .admin()
        .update_store(app.platform(update(&["id"])))
        .await;
    assert_eq!(r.unwrap_err().code(), Code::InvalidArgument);
    let r = app.admin().update_store(app.platform(update(&[]))).await;
    assert_status(
        r,
        Code::InvalidArgument,
        "update_mask must name the fields to change",
    );
    let unknown = checkout::domain::ids::StoreId::generate().to_string();
    let r = app
        .admin()
        .get_store(app.platform(pb::GetStoreRequest { store_id: unknown }))
        .await;
    assert_status(r, Code::NotFound, "Store not found");
    let r = app
        .admin()
        .get_store(app.platform(pb::GetStoreRequest {
            store_id: "nope".into(),
        }))
        .await;
    assert_status(r, Code::InvalidArgument, "store_id is not a valid id");
    // Nothing half-written: the failed creates left no store behind.
    let r = app
        .admin()
        .get_store(app.platform(pb::GetStoreRequest {
            store_id: store.id.clone(),
        }))
        .await;
    assert!(r.is_ok());
}

pub async fn api_key_round_trip(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    for (env, prefix) in [
        (pb::Environment::Test, "sk_test_"),
        (pb::Environment::Prod, "sk_prod_"),
    ] {
        let req = pb::CreateApiKeyRequest {
            store_id: store.id.clone(),
            environment: env as i32,
        };
        let created = app
            .admin()
            .create_api_key(app.platform(req))
            .await
            .unwrap()
            .into_inner();
        assert!(created.secret.starts_with(prefix));
        // 43 base62 characters: 256 random bits.
        assert_eq!(created.secret.len(), prefix.len() + 43);
        let key = created.api_key.unwrap();
        assert_eq!(
            (key.id.as_str(), key.environment),
            (created.api_key_id.as_str(), env as i32)
        );
        let env_name = if env == pb::Environment::Test {
            "test"
        } else {
            "prod"
        };
        let r = app
            .checkout()
            .get_session(keyed(probe(), &created.secret, env_name))
            .await;
        assert_status(r, Code::NotFound, "Session not found");
        // Revoking twice keeps the first revocation time.
        let revoke = || {
            app.platform(pb::RevokeApiKeyRequest {
                api_key_id: created.api_key_id.clone(),
            })
        };
        let first = app
            .admin()
            .revoke_api_key(revoke())
            .await
            .unwrap()
            .into_inner();
        let second = app
            .admin()
            .revoke_api_key(revoke())
            .await
            .unwrap()
            .into_inner();
        assert!(first.revoked_at.is_some());
        assert_eq!(first.revoked_at, second.revoked_at);
    }
    let unspecified = pb::CreateApiKeyRequest {
        store_id: store.id.clone(),
        environment: 0,
    };
    assert_status(
        app.admin().create_api_key(app.platform(unspecified)).await,
        Code::InvalidArgument,
        "environment must be ENVIRONMENT_TEST or ENVIRONMENT_PROD",
    );
    let unknown_store = pb::CreateApiKeyRequest {
        store_id: checkout::domain::ids::StoreId::generate().to_string(),
        environment: pb::Environment::Test as i32,
    };
    assert_status(
        app.admin()
            .create_api_key(app.platform(unknown_store))
            .await,
        Code::NotFound,
        "Store not found",
    );
    let unknown_key = pb::RevokeApiKeyRequest {
        api_key_id: checkout::domain::ids::ApiKeyId::generate().to_string(),
    };
    assert_status(
        app.admin().revoke_api_key(app.platform(unknown_key)).await,
        Code::NotFound,
        "API key not found",
    );
}

pub async fn webhook_endpoints(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let s = shop(&app).await;
    let create = |env: pb::Environment, url: &str| {
        app.platform(pb::CreateWebhookEndpointRequest {
            store_id: s.store_id.clone(),
            environment: env as i32,
            url: url.into(),
        })
    };
    let ok = app
        .admin()
        .create_webhook_endpoint(create(
            pb::Environment::Prod,
            "https://hooks.example.com/checkout",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.id.starts_with("we_") && ok.secret.starts_with("whsec_"));
    assert_eq!(ok.environment, pb::Environment::Prod as i32);
    let r = app
        .admin()
        .create_webhook_endpoint(create(pb::Environment::Prod, "http://hooks.example.com/x"))
        .await;
    assert_status(
        r,
        Code::InvalidArgument,
        "url: URL scheme must be https in prod",
    );
    for target in [
        "https://127.0.0.1/x",
        "http://localhost:8080/x",
        "https://10.0.0.5/x",
        "https://169.254.169.254/x",
        "https://[::1]/x",
    ] {
        let r = app
            .admin()
            .create_webhook_endpoint(create(pb::Environment::Test, target))
            .await;
        assert_status(
            r,
            Code::InvalidArgument,
            "url: loopback, private and link-local targets are not allowed",
        );
    }
    // An operator who allows private targets (local testing) can register one.
    let permissive = TestApp::spawn_with(
        &ctx,
        Options {
            webhook_allow_private_targets: true,
            ..Default::default()
        },
    )
    .await;
    let store = create_store(&permissive, true, false).await;
    let req = pb::CreateWebhookEndpointRequest {
        store_id: store.id.clone(),
        environment: pb::Environment::Test as i32,
        url: "http://127.0.0.1:9999/hook".into(),
    };
    permissive
        .admin()
        .create_webhook_endpoint(permissive.platform(req))
        .await
        .unwrap();

    // The delivery log exists and is empty until something is delivered.
    let list = |token: &str| {
        app.platform(pb::ListWebhookDeliveriesRequest {
            store_id: s.store_id.clone(),
            page_token: token.into(),
            ..Default::default()
        })
    };
    let log = app
        .admin()
        .list_webhook_deliveries(list(""))
        .await
        .unwrap()
        .into_inner();
    assert!(log.deliveries.is_empty() && log.next_page_token.is_empty());
    assert_status(
        app.admin().list_webhook_deliveries(list("!!")).await,
        Code::InvalidArgument,
        "Invalid page_token",
    );
}

/// `checkout admin …` provisions the same database the server reads.
pub async fn cli_provisions_what_the_server_serves(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let slug = unique_slug("cli");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkout"))
            .arg("admin")
            .args(args)
            .env("DATABASE_URL", &app.db.url)
            .env("CHECKOUT_SECRETS_KEY", &app.db.secrets_key)
            .output()
            .expect("run the checkout binary");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "create-store",
        "--slug",
        &slug,
        "--name",
        "CLI Shop",
        "--origin",
        "https://cli.example.com",
    ]);
    assert!(ok, "{err}");
    let store: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    let store_id = store["id"].as_str().unwrap().to_owned();
    assert_eq!(store["slug"], slug.as_str());
    let (ok, out, err) = run(&[
        "create-api-key",
        "--store-id",
        &store_id,
        "--environment",
        "test",
    ]);
    assert!(ok, "{err}");
    let key: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secret = key["secret"].as_str().unwrap();
    let r = app
        .checkout()
        .get_session(keyed(probe(), secret, "test"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");
    // Errors carry the gRPC code and message, and a failing exit status.
    let (ok, _, err) = run(&["create-store", "--slug", &slug, "--name", "Again"]);
    assert!(!ok);
    assert!(
        err.contains("AlreadyExists: A store with this slug already exists"),
        "{err}"
    );
}
