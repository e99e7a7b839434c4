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

/// Rotations racing on one endpoint form one chain: each that succeeds replaced the secret
/// current at that moment, so afterwards the two signing secrets are the last two of that
/// chain, and a secret handed to a caller is never silently dropped while an older one
/// still signs. Losers of the race are told to retry.
pub async fn concurrent_rotations_form_one_chain(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let rotations = (0..4).map(|_| {
        let mut admin = app.admin();
        let req = app.platform(pb::RotateWebhookEndpointSecretRequest {
            endpoint_id: hook.id.clone(),
            overlap: None,
        });
        async move { admin.rotate_webhook_endpoint_secret(req).await }
    });
    let mut issued = Vec::new();
    for r in futures_util::future::join_all(rotations).await {
        match r {
            Ok(r) => issued.push(r.into_inner().secret),
            Err(s) => assert_eq!(
                (s.code(), s.message()),
                (
                    tonic::Code::FailedPrecondition,
                    "The endpoint's secret is being rotated concurrently; retry"
                )
            ),
        }
    }
    assert!(!issued.is_empty(), "at least one rotation succeeds");
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&app, &s.id, "pay").await.unwrap();
    let got = &receiver.wait_for(1).await[0];
    let signers: Vec<&String> = std::iter::once(&hook.secret)
        .chain(&issued)
        .filter(|secret| crate::webhook_admin::signed_by(got, secret))
        .collect();
    assert_eq!(signers.len(), 2, "the current and the previous secret sign");
    assert!(issued.contains(signers[0]) || issued.contains(signers[1]));
    // The original secret still signs only if no second rotation replaced it since.
    assert_eq!(signers.contains(&&hook.secret), issued.len() == 1);
}
