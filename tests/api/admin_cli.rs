//! The listing and management subcommands of `checkout admin`, through the binary.
use crate::{
    fixtures::{catalog, coupon},
    helpers::{Ctx, TestApp},
};
use checkout::pb;

/// Every new `checkout admin` subcommand, through the binary, on the server's database.
pub async fn cli_lists_and_manages(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, crate::webhooks::local()).await;
    let c = catalog(&app).await;
    let percent = pb::CreateCouponRequest {
        code: "CLI10".into(),
        discount: Some(pb::create_coupon_request::Discount::PercentOff(10)),
        ..Default::default()
    };
    let cpn = coupon(&app, &c.shop.store_id, percent).await;
    let hook =
        crate::webhooks::endpoint(&app, &c, "http://127.0.0.1:9/cli", pb::Environment::Test).await;
    let run = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkout"))
            .arg("admin")
            .args(args)
            .env("DATABASE_URL", &app.db.url)
            .env("CHECKOUT_SECRETS_KEY", &app.db.secrets_key)
            .env("CHECKOUT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
            .output()
            .expect("run the checkout binary");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains(&c.shop.test_key) && !stdout.contains(&hook.secret));
        serde_json::from_str(&stdout).expect("JSON output")
    };
    let store = c.shop.store_id.as_str();
    let out = run(&["list-stores", "--page-size", "5"]);
    assert_eq!(out["stores"][0]["id"], store);
    let out = run(&["list-api-keys", "--store-id", store]);
    let keys = out["apiKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let prefix = keys[1]["secretPrefix"].as_str().unwrap();
    assert!(
        c.shop.test_key.starts_with(prefix) && prefix.len() == 12,
        "{out}"
    );
    let out = run(&["list-products", "--store-id", store, "--page-size", "4"]);
    assert_eq!(out["products"].as_array().unwrap().len(), 4);
    let token = out["nextPageToken"].as_str().unwrap();
    let out = run(&[
        "list-products",
        "--store-id",
        store,
        "--page-size",
        "4",
        "--page-token",
        token,
    ]);
    assert_eq!(out["products"][1]["id"], c.widget.as_str());
    let out = run(&["list-coupons", "--store-id", store]);
    assert_eq!(
        (&out["coupons"][0]["code"], &out["coupons"][0]["active"]),
        (&"CLI10".into(), &true.into())
    );
    let out = run(&["update-coupon", "--coupon-id", &cpn.id, "--active", "false"]);
    assert_eq!(out["id"], cpn.id.as_str());
    assert!(!out["active"].as_bool().unwrap_or(false), "{out}");
    let out = run(&["list-webhook-endpoints", "--store-id", store]);
    assert_eq!(out["webhookEndpoints"][0]["id"], hook.id.as_str());
    let out = run(&[
        "update-webhook-endpoint",
        "--endpoint-id",
        &hook.id,
        "--event-type",
        "order.completed",
        "--disabled",
        "true",
        "--url",
        "http://127.0.0.1:9/moved",
    ]);
    assert_eq!(out["eventTypes"], serde_json::json!(["order.completed"]));
    assert_eq!(
        (&out["disabled"], &out["url"]),
        (&true.into(), &"http://127.0.0.1:9/moved".into())
    );
    let out = run(&[
        "update-webhook-endpoint",
        "--endpoint-id",
        &hook.id,
        "--all-event-types",
    ]);
    assert!(out["eventTypes"].is_null(), "every type: {out}");
    let out = run(&[
        "rotate-webhook-endpoint-secret",
        "--endpoint-id",
        &hook.id,
        "--overlap",
        "60s",
    ]);
    assert!(out["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(
        out["webhookEndpoint"]["previousSecretExpiresAt"].is_string(),
        "{out}"
    );
    let out = run(&["delete-webhook-endpoint", "--endpoint-id", &hook.id]);
    assert_eq!(out["id"], hook.id.as_str());
    let out = run(&["list-webhook-endpoints", "--store-id", store]);
    assert!(out["webhookEndpoints"].is_null(), "{out}");
    // Errors: the gRPC code and message, and a failing exit status.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkout"))
        .args([
            "admin",
            "update-coupon",
            "--coupon-id",
            "nope",
            "--active",
            "true",
        ])
        .env("DATABASE_URL", &app.db.url)
        .env("CHECKOUT_SECRETS_KEY", &app.db.secrets_key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument: coupon.id is not a valid id"),
        "{err}"
    );
}
