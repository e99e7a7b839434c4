//! Registration resolves webhook host names (issue 10 item 6): a name that points at this
//! machine or the private network is refused at once, with the same message as such an
//! address written in the URL, rather than accepted and then failed at every send.
use crate::{
    fixtures::create_store,
    helpers::{assert_status, Ctx, Options, TestApp},
};
use checkout::pb;
use tonic::Code;

fn request(store_id: &str, url: &str) -> pb::CreateWebhookEndpointRequest {
    pb::CreateWebhookEndpointRequest {
        store_id: store_id.into(),
        environment: pb::Environment::Test as i32,
        url: url.into(),
    }
}

pub async fn names_resolving_inside_are_refused_at_registration(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let store = create_store(&app, true, true).await;
    // The machine's own name resolves through /etc/hosts to a loopback address.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    let resolved: Vec<_> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .expect("the host name resolves")
        .collect();
    assert!(
        resolved
            .iter()
            .all(|a| checkout::domain::webhook::is_forbidden_ip(a.ip())),
        "{host} is local: {resolved:?}"
    );
    let refusal = "url: loopback, private and link-local targets are not allowed";
    for url in [
        "http://127.0.0.1:8080/hooks".to_owned(),
        "http://localhost.:8080/hooks".to_owned(),
        "http://LocalHost.:8080/hooks".to_owned(),
        format!("http://{host}:8080/hooks"),
        format!("http://{}:8080/hooks", host.to_uppercase()),
    ] {
        let r = app
            .admin()
            .create_webhook_endpoint(app.platform(request(&store.id, &url)))
            .await;
        assert_status(r, Code::InvalidArgument, refusal);
    }
    // A name that does not resolve is accepted: the send-time check guards it.
    app.admin()
        .create_webhook_endpoint(
            app.platform(request(&store.id, "https://hooks.example.invalid/x")),
        )
        .await
        .expect("an unresolvable name is accepted");
    // An operator who allows private targets may register them.
    let permissive = TestApp::spawn_on(
        app.db.clone(),
        Options {
            platform_token: app.platform_token.clone(),
            webhook_allow_private_targets: true,
            ..Default::default()
        },
    )
    .await;
    let url = format!("http://{host}:8080/hooks");
    permissive
        .admin()
        .create_webhook_endpoint(permissive.platform(request(&store.id, &url)))
        .await
        .expect("allowed by the operator");
}
