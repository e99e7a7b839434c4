//! A rotated-out webhook secret across restarts and a change of CHECKOUT_SECRETS_KEY: the
//! start-time reseal covers it like the current secret.
use crate::{
    fixtures::{catalog, created, line, order},
    helpers::{new_secrets_key, Ctx, Options, SecretsKey, TestApp},
    lifecycle::complete,
    receiver::Receiver,
    secrets::key_id,
    storage::{contains, dump},
    webhooks::{endpoint, local, verify},
};
use checkout::pb;
use std::time::Duration;

pub async fn previous_secret_is_resealed_at_start(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let rotate = pb::RotateWebhookEndpointSecretRequest {
        endpoint_id: hook.id.clone(),
        overlap: None,
    };
    let second = app
        .admin()
        .rotate_webhook_endpoint_secret(app.platform(rotate))
        .await
        .unwrap()
        .into_inner();
    let (db, token) = (app.db.clone(), app.platform_token.clone());
    let opts = |key| Options {
        platform_token: token.clone(),
        secrets_key: key,
        ..local()
    };
    let (old, new) = (db.secrets_key.clone(), new_secrets_key());
    app.stop(Duration::from_secs(5)).await;

    // The new key current, the old one still accepted: both secrets are re-sealed.
    let rotating = opts(SecretsKey::Given(new.clone(), Some(old.clone())));
    let app = TestApp::spawn_on(db.clone(), rotating).await;
    app.stop(Duration::from_secs(5)).await;
    let bytes = dump(&db);
    assert!(!contains(&bytes, &format!("sealed:v1:{}:", key_id(&old))));
    assert!(!contains(&bytes, &hook.secret) && !contains(&bytes, &second.secret));

    // The new key alone opens both: each delivery still verifies with either secret.
    let app = TestApp::spawn_on(db.clone(), opts(SecretsKey::Given(new, None))).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&app, &s.id, "pay").await.unwrap();
    let got = receiver.wait_for(1).await;
    verify(&got[0], &hook.secret);
    verify(&got[0], &second.secret);
}
