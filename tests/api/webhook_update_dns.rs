//! UpdateWebhookEndpoint checks a new URL exactly like registration, DNS included.
use crate::{
    fixtures::create_store,
    helpers::{assert_status, bad_request_fields, Ctx, TestApp},
};
use checkout::pb;
use prost_types::FieldMask;
use tonic::Code;

pub async fn new_url_is_checked_like_registration(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    let create = pb::CreateWebhookEndpointRequest {
        store_id: store.id.clone(),
        environment: pb::Environment::Test as i32,
        url: "https://hooks.example.invalid/x".into(),
    };
    let hook = app
        .admin()
        .create_webhook_endpoint(app.platform(create))
        .await
        .expect("an unresolvable name is accepted")
        .into_inner();
    let set_url = |url: &str| pb::UpdateWebhookEndpointRequest {
        webhook_endpoint: Some(pb::WebhookEndpoint {
            id: hook.id.clone(),
            url: url.into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["url".into()],
        }),
    };
    let refusal = "url: loopback, private and link-local targets are not allowed";
    for url in [
        "http://127.0.0.1:8080/hooks",
        "http://localhost.:8080/hooks",
        "http://[::1]:8080/hooks",
    ] {
        let r = app
            .admin()
            .update_webhook_endpoint(app.platform(set_url(url)))
            .await;
        let s = assert_status(r, Code::InvalidArgument, refusal);
        assert_eq!(bad_request_fields(&s), ["webhook_endpoint.url"]);
    }
    let r = app
        .admin()
        .update_webhook_endpoint(app.platform(set_url("ftp://hooks.example.invalid/")))
        .await;
    assert_status(r, Code::InvalidArgument, "url: URL scheme must be https");
    // Refused changes changed nothing; an acceptable one is stored as normalized.
    let e = app
        .admin()
        .update_webhook_endpoint(app.platform(set_url(" https://Other.Example.invalid/y ")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.url, "https://other.example.invalid/y");
}
