//! Managing webhook endpoints: list, update (disable, URL, event types), delete, and secret
//! rotation with both secrets signing during the overlap, against real receivers.
use crate::{
    fixtures::{catalog, created, line, order, Catalog},
    helpers::{assert_status, bad_request_fields, Ctx, Options, TestApp},
    lifecycle::{complete, expire},
    receiver::{Received, Receiver},
    webhooks::{deliveries, endpoint, local, verify},
};
use base64::{engine::general_purpose::STANDARD, Engine};
use checkout::{domain::ids::WebhookEndpointId, pb};
use hmac::{Hmac, Mac};
use prost::Message;
use prost_types::FieldMask;
use std::time::Duration;
use tonic::Code;

fn update(
    id: &str,
    paths: &[&str],
    set: impl FnOnce(&mut pb::WebhookEndpoint),
) -> pb::UpdateWebhookEndpointRequest {
    let mut e = pb::WebhookEndpoint {
        id: id.into(),
        ..Default::default()
    };
    set(&mut e);
    pb::UpdateWebhookEndpointRequest {
        webhook_endpoint: Some(e),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

async fn updated(app: &TestApp, req: pb::UpdateWebhookEndpointRequest) -> pb::WebhookEndpoint {
    app.admin()
        .update_webhook_endpoint(app.platform(req))
        .await
        .expect("update endpoint")
        .into_inner()
}

async fn delete(app: &TestApp, id: &str) -> Result<pb::WebhookEndpoint, tonic::Status> {
    let req = pb::DeleteWebhookEndpointRequest {
        endpoint_id: id.into(),
    };
    app.admin()
        .delete_webhook_endpoint(app.platform(req))
        .await
        .map(tonic::Response::into_inner)
}

async fn list(
    app: &TestApp,
    c: &Catalog,
    size: i32,
    token: String,
) -> pb::ListWebhookEndpointsResponse {
    let req = pb::ListWebhookEndpointsRequest {
        store_id: c.shop.store_id.clone(),
        page_size: size,
        page_token: token,
    };
    app.admin()
        .list_webhook_endpoints(app.platform(req))
        .await
        .unwrap()
        .into_inner()
}

pub async fn endpoint_list_update_delete(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let test = pb::Environment::Test;
    let a = endpoint(&app, &c, "http://127.0.0.1:9/a", test).await;
    let b = endpoint(&app, &c, "http://127.0.0.1:9/b", test).await;
    let p = endpoint(&app, &c, "https://127.0.0.1:9/p", pb::Environment::Prod).await;
    let first = list(&app, &c, 2, String::new()).await;
    let second = list(&app, &c, 2, first.next_page_token.clone()).await;
    assert!(second.next_page_token.is_empty());
    let all: Vec<pb::WebhookEndpoint> = first
        .webhook_endpoints
        .iter()
        .chain(&second.webhook_endpoints)
        .cloned()
        .collect();
    let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [&p.id, &b.id, &a.id], "newest first");
    assert_eq!(all[2].url, "http://127.0.0.1:9/a");
    assert!(all.iter().all(|e| !e.disabled && e.event_types.is_empty()));
    assert_eq!(all[0].environment, pb::Environment::Prod as i32);
    for page in [&first, &second] {
        let text = String::from_utf8_lossy(&page.encode_to_vec()).into_owned();
        assert!(
            !text.contains("whsec_") && !text.contains("sealed:"),
            "no secret"
        );
        for e in [&a, &b, &p] {
            assert!(!text.contains(&e.secret));
        }
    }

    // URL, event types and disabled, each alone and together.
    let e = updated(
        &app,
        update(&a.id, &["url"], |e| e.url = "http://127.0.0.1:9/new".into()),
    )
    .await;
    assert_eq!(
        (e.url.as_str(), e.disabled),
        ("http://127.0.0.1:9/new", false)
    );
    let e = updated(
        &app,
        update(&a.id, &["event_types", "disabled"], |e| {
            e.event_types = vec![
                "checkout.session.expired".into(),
                "order.completed".into(),
                "order.completed".into(),
            ];
            e.disabled = true;
            e.url = "ignored: not in the mask".into();
        }),
    )
    .await;
    assert_eq!(
        e.event_types,
        ["order.completed", "checkout.session.expired"]
    );
    assert!(e.disabled && e.disabled_at.is_some());
    assert_eq!(e.url, "http://127.0.0.1:9/new");
    let e = updated(&app, update(&a.id, &["disabled"], |e| e.disabled = false)).await;
    assert!(!e.disabled && e.disabled_at.is_none());

    // Validation: the URL rules of registration, with the endpoint's environment.
    let bad = |paths: &'static [&'static str], set: fn(&mut pb::WebhookEndpoint)| {
        let app = &app;
        let id = p.id.clone();
        async move {
            app.admin()
                .update_webhook_endpoint(app.platform(update(&id, paths, set)))
                .await
                .expect_err("refused")
        }
    };
    let s = bad(&["url"], |e| e.url = "http://127.0.0.1:9/plain".into()).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(s.message(), "url: URL scheme must be https in prod");
    assert_eq!(bad_request_fields(&s), ["webhook_endpoint.url"]);
    let s = bad(&["event_types"], |e| e.event_types = vec!["order.*".into()]).await;
    assert_eq!(bad_request_fields(&s), ["webhook_endpoint.event_types[0]"]);
    assert!(
        s.message().starts_with("event_types: unknown event type"),
        "{s:?}"
    );
    let s = bad(&["secret"], |_| {}).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = bad(&[], |_| {}).await;
    assert_eq!(s.message(), "update_mask must name the fields to change");
    let r = app
        .admin()
        .update_webhook_endpoint(app.platform(update("we_x", &["disabled"], |_| {})))
        .await;
    assert_status(
        r,
        Code::InvalidArgument,
        "webhook_endpoint.id is not a valid id",
    );

    // Delete: gone from the list; a second delete, an update or a rotation is NOT_FOUND.
    let rotated = app
        .admin()
        .rotate_webhook_endpoint_secret(app.platform(pb::RotateWebhookEndpointSecretRequest {
            endpoint_id: b.id.clone(),
            overlap: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(rotated
        .webhook_endpoint
        .unwrap()
        .previous_secret_expires_at
        .is_some());
    let gone = delete(&app, &b.id).await.unwrap();
    assert!(gone.disabled && gone.disabled_at.is_some());
    assert!(
        gone.previous_secret_expires_at.is_none(),
        "its secrets are erased"
    );
    let left: Vec<String> = list(&app, &c, 0, String::new())
        .await
        .webhook_endpoints
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [p.id.clone(), a.id.clone()]);
    let not_found = "Webhook endpoint not found";
    assert_status(delete(&app, &b.id).await, Code::NotFound, not_found);
    let unknown = WebhookEndpointId::generate().to_string();
    assert_status(delete(&app, &unknown).await, Code::NotFound, not_found);
    let r = app
        .admin()
        .update_webhook_endpoint(app.platform(update(&b.id, &["disabled"], |_| {})))
        .await;
    assert_status(r, Code::NotFound, not_found);
    let r = app
        .admin()
        .rotate_webhook_endpoint_secret(app.platform(pb::RotateWebhookEndpointSecretRequest {
            endpoint_id: b.id.clone(),
            overlap: None,
        }))
        .await;
    assert_status(r, Code::NotFound, not_found);
}

/// Events are made while no dispatcher runs; meanwhile one endpoint is disabled, one
/// deleted, one narrowed to expiries. A dispatching replica then sends each endpoint only
/// what it is subscribed to; the disabled and deleted ones get nothing, and the disabled
/// one, enabled again, gets only events made after that.
pub async fn deliveries_follow_subscriptions(ctx: Ctx) {
    let quiet = Options {
        webhook_dispatcher: false,
        ..local()
    };
    let app = TestApp::spawn_with(&ctx, quiet).await;
    let c = catalog(&app).await;
    let (all, disabled, expiries, deleted) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let test = pb::Environment::Test;
    let _all = endpoint(&app, &c, &all.url(), test).await;
    let dis = endpoint(&app, &c, &disabled.url(), test).await;
    let exp = endpoint(&app, &c, &expiries.url(), test).await;
    let del = endpoint(&app, &c, &deleted.url(), test).await;
    updated(
        &app,
        update(&exp.id, &["event_types"], |e| {
            e.event_types = vec!["checkout.session.expired".into()]
        }),
    )
    .await;
    // One event before the changes (pending for every endpoint), one after.
    let s1 = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&app, &s1.id, "pay_1").await.unwrap();
    updated(&app, update(&dis.id, &["disabled"], |e| e.disabled = true)).await;
    delete(&app, &del.id).await.unwrap();
    let s2 = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    expire(&app, &c, &s2.id).await.unwrap();

    let token = app.platform_token.clone();
    let dispatching = TestApp::spawn_on(
        app.db.clone(),
        Options {
            platform_token: token,
            ..local()
        },
    )
    .await;
    let got = all.wait_for(2).await;
    let kinds = |got: &[Received]| -> Vec<String> {
        let mut k: Vec<String> = got
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&got), ["checkout.session.expired", "order.completed"]);
    let got = expiries.wait_for(1).await;
    let body = verify(&got[0], &exp.secret);
    assert_eq!(body["data"]["checkout_session_id"], s2.id.as_str());
    // Every job was due in the same round as those delivered: the log settles, then
    // nothing else has arrived.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(expiries.received().len(), 1, "only its subscribed type");
    assert!(
        disabled.received().is_empty(),
        "a disabled endpoint gets nothing"
    );
    assert!(
        deleted.received().is_empty(),
        "a deleted endpoint gets nothing"
    );
    let log = deliveries(&dispatching, &c).await;
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log
        .iter()
        .all(|d| d.endpoint_id != dis.id && d.endpoint_id != del.id));

    // Enabled again: new events only.
    updated(
        &dispatching,
        update(&dis.id, &["disabled"], |e| e.disabled = false),
    )
    .await;
    let s3 = created(&dispatching, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&dispatching, &s3.id, "pay_3").await.unwrap();
    let got = disabled.wait_for(1).await;
    assert_eq!(
        verify(&got[0], &dis.secret)["data"]["checkout_session_id"],
        s3.id.as_str()
    );
    all.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(disabled.received().len(), 1);
    assert!(deleted.received().is_empty());
    // The deleted endpoint's delivery log stays readable (empty here: nothing was sent).
    let req = pb::ListWebhookDeliveriesRequest {
        store_id: c.shop.store_id.clone(),
        endpoint_id: del.id.clone(),
        ..Default::default()
    };
    let r = dispatching
        .admin()
        .list_webhook_deliveries(dispatching.platform(req))
        .await
        .unwrap()
        .into_inner();
    assert!(r.deliveries.is_empty());
    drop(app);
}

/// Whether one of the request's signatures is the secret's.
pub(crate) fn signed_by(r: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    let (id, ts) = (&r.headers["webhook-id"], &r.headers["webhook-timestamp"]);
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    r.headers["webhook-signature"]
        .split(' ')
        .any(|s| s == expected)
}

async fn rotate(
    app: &TestApp,
    id: &str,
    overlap: Option<prost_types::Duration>,
) -> Result<pb::RotateWebhookEndpointSecretResponse, tonic::Status> {
    let req = pb::RotateWebhookEndpointSecretRequest {
        endpoint_id: id.into(),
        overlap,
    };
    app.admin()
        .rotate_webhook_endpoint_secret(app.platform(req))
        .await
        .map(tonic::Response::into_inner)
}

fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// During the overlap each delivery carries two signatures, and a receiver verifies it with
/// either secret; after the overlap only the new secret signs.
pub async fn rotation_signs_with_both_during_the_overlap(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let event = |n: usize| {
        let (app, c) = (&app, &c);
        async move {
            let s = created(app, c, order(vec![line(&c.widget, 1)], "USD")).await;
            complete(app, &s.id, &format!("pay_{n}")).await.unwrap();
        }
    };

    // A long overlap (the default is a day): both sign.
    let second = rotate(&app, &hook.id, None).await.unwrap();
    assert!(second.secret.starts_with("whsec_") && second.secret != hook.secret);
    let e = second.webhook_endpoint.unwrap();
    let until = e.previous_secret_expires_at.expect("overlap end").seconds;
    let now = checkout::domain::time::Timestamp::now().seconds();
    assert!((until - now - 86_400).abs() < 60, "a day by default");
    event(1).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    verify(&got[0], &hook.secret);
    verify(&got[0], &second.secret);

    // Rotated again with a one-second overlap: after it, only the newest secret signs
    // (and the first no longer does at all).
    let third = rotate(&app, &hook.id, secs(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    event(2).await;
    let got = receiver.wait_for(2).await;
    let last = &got[1];
    assert_eq!(last.headers["webhook-signature"].split(' ').count(), 1);
    verify(last, &third.secret);
    assert!(!signed_by(last, &second.secret) && !signed_by(last, &hook.secret));
    let listed = list(&app, &c, 0, String::new()).await.webhook_endpoints;
    assert!(
        listed[0].previous_secret_expires_at.is_none(),
        "the overlap ended"
    );

    // A zero overlap replaces the secret at once.
    let fourth = rotate(&app, &hook.id, secs(0)).await.unwrap();
    assert!(fourth
        .webhook_endpoint
        .unwrap()
        .previous_secret_expires_at
        .is_none());
    event(3).await;
    let got = receiver.wait_for(3).await;
    verify(&got[2], &fourth.secret);
    assert!(!signed_by(&got[2], &third.secret));

    // The overlap is bounded; the secret is never in a list.
    for bad in [secs(8 * 24 * 3600), secs(-1)] {
        let r = rotate(&app, &hook.id, bad).await;
        let s = assert_status(
            r,
            Code::InvalidArgument,
            "overlap must be between 0 and 7 days (168h)",
        );
        assert_eq!(bad_request_fields(&s), ["overlap"]);
    }
    let text = String::from_utf8_lossy(&list(&app, &c, 0, String::new()).await.encode_to_vec())
        .into_owned();
    assert!(!text.contains(&fourth.secret) && !text.contains("whsec_"));
}
