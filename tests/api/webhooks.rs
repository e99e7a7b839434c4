//! Webhooks end to end, against a real local HTTP receiver: signed Standard Webhooks
//! deliveries from the outbox, retries, restarts, two dispatchers, 410, SSRF refusals.
use crate::{
    fixtures::{catalog, created, line, order, Catalog},
    helpers::{Ctx, Options, TestApp},
    lifecycle::{complete, expire},
    receiver::{Received, Receiver},
};
use base64::{engine::general_purpose::STANDARD, Engine};
use checkout::pb;
use hmac::{Hmac, Mac};
use std::time::Duration;

/// Local receivers live on 127.0.0.1, which only an operator's explicit setting allows.
pub(crate) fn local() -> Options {
    Options {
        webhook_allow_private_targets: true,
        ..Default::default()
    }
}

pub(crate) async fn endpoint(
    app: &TestApp,
    c: &Catalog,
    url: &str,
    env: pb::Environment,
) -> pb::CreateWebhookEndpointResponse {
    let req = pb::CreateWebhookEndpointRequest {
        store_id: c.shop.store_id.clone(),
        environment: env as i32,
        url: url.into(),
    };
    app.admin()
        .create_webhook_endpoint(app.platform(req))
        .await
        .expect("endpoint")
        .into_inner()
}

pub(crate) async fn deliveries(app: &TestApp, c: &Catalog) -> Vec<pb::WebhookDelivery> {
    let req = pb::ListWebhookDeliveriesRequest {
        store_id: c.shop.store_id.clone(),
        page_size: 100,
        ..Default::default()
    };
    app.admin()
        .list_webhook_deliveries(app.platform(req))
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Verifies a request as a receiver would, from the Standard Webhooks scheme alone.
pub(crate) fn verify(r: &Received, secret: &str) -> serde_json::Value {
    let id = &r.headers["webhook-id"];
    let ts: i64 = r.headers["webhook-timestamp"].parse().unwrap();
    let now = checkout::domain::time::Timestamp::now().seconds();
    assert!((now - ts).abs() < 60, "fresh timestamp");
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let given: Vec<&str> = r.headers["webhook-signature"].split(' ').collect();
    assert!(given.contains(&expected.as_str()), "signature verifies");
    assert_eq!(r.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["id"], id.as_str(), "webhook-id is the event id");
    body
}

pub async fn signed_events_are_delivered(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let prod_only = endpoint(&app, &c, "https://127.0.0.1:9/hooks", pb::Environment::Prod).await;

    let req = pb::CreateSessionRequest {
        order_merchant_external_id: Some("ext-9".into()),
        ..order(vec![line(&c.widget, 2)], "USD")
    };
    let s = created(&app, &c, req).await;
    let done = complete(&app, &s.id, "pay_1").await.unwrap();
    let got = receiver.wait_for(1).await;
    let body = verify(&got[0], &hook.secret);
    assert_eq!(
        (body["type"].as_str(), body["environment"].as_str()),
        (Some("order.completed"), Some("test"))
    );
    let data = &body["data"];
    assert_eq!(data["checkout_session_id"], s.id.as_str());
    assert_eq!(data["order_id"], done.order_id.as_str());
    assert_eq!(data["order_merchant_external_id"], "ext-9");
    assert_eq!(
        (data["currency"].as_str(), data["amount_total"].as_i64()),
        (Some("USD"), Some(3998))
    );
    assert_eq!(data["lines"][0]["product_id"], c.widget.as_str());
    // The SPEC's payload fields are at the top level too.
    for field in [
        "checkout_session_id",
        "order_id",
        "order_merchant_external_id",
        "amount_total",
        "currency",
    ] {
        assert_eq!(body[field], data[field], "{field}");
    }
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));

    // A free order and an expiry are events too.
    let free = created(&app, &c, order(vec![line(&c.free, 1)], "USD")).await;
    let open = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    expire(&app, &c, &open.id).await.unwrap();
    let got = receiver.wait_for(3).await;
    let kinds: Vec<(String, String)> = got[1..]
        .iter()
        .map(|r| verify(r, &hook.secret))
        .map(|b| {
            (
                b["type"].as_str().unwrap().to_owned(),
                b["data"]["checkout_session_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert!(kinds.contains(&("order.completed".into(), free.id.clone())));
    assert!(kinds.contains(&("checkout.session.expired".into(), open.id.clone())));
    // Test events never reach the prod endpoint. Every attempt is in the log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = deliveries(&app, &c).await;
    assert!(
        log.iter().all(|d| d.endpoint_id != prod_only.id),
        "no test event for a prod endpoint"
    );
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|d| d.success
        && d.response_status == 200
        && d.attempt == 1
        && d.endpoint_id == hook.id));
}

/// The receiver is down (connection refused), then answers 503, then 200: the event
/// arrives, every attempt carried the same webhook-id, and the log shows each one.
pub async fn retries_until_the_receiver_is_up(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let down = Receiver::start().await;
    let (addr, url) = (down.addr, down.url());
    drop(down);
    let hook = endpoint(&app, &c, &url, pb::Environment::Test).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&app, &s.id, "pay").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let up = Receiver::start_on(addr).await;
    up.respond_with(503);
    let first = up.wait_for(1).await;
    up.respond_with(200);
    let all = up.wait_for(2).await;
    let id = &first[0].headers["webhook-id"];
    assert!(
        all.iter().all(|r| &r.headers["webhook-id"] == id),
        "one webhook-id across retries"
    );
    verify(all.last().unwrap(), &hook.secret);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut log = deliveries(&app, &c).await;
    log.reverse();
    assert!(
        log.len() >= 3,
        "refused, 503 and 200 are all logged: {log:?}"
    );
    assert!(log[0].response_status == 0 && !log[0].success && !log[0].error.is_empty());
    assert!(log
        .iter()
        .any(|d| d.response_status == 503 && d.error == "HTTP 503"));
    let last = log.last().unwrap();
    assert!(last.success && last.attempt as usize == log.len());
    assert_eq!(up.received().len(), 2, "nothing more after success");
}

/// The state change commits on a replica that dies before sending anything; a restarted
/// service delivers it.
pub async fn delivered_after_restart(ctx: Ctx) {
    let no_dispatch = Options {
        webhook_dispatcher: false,
        ..local()
    };
    let app = TestApp::spawn_with(&ctx, no_dispatch).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&app, &s.id, "pay").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty());
    let (db, token) = (app.db.clone(), app.platform_token.clone());
    app.stop(Duration::from_secs(5)).await;
    let _restarted = TestApp::spawn_on(
        db,
        Options {
            platform_token: token,
            ..local()
        },
    )
    .await;
    let got = receiver.wait_for(1).await;
    assert_eq!(
        verify(&got[0], &hook.secret)["data"]["checkout_session_id"],
        s.id.as_str()
    );
}

/// Two replicas dispatching from one database: each event reaches the endpoint once.
pub async fn two_dispatchers_deliver_each_event_once(ctx: Ctx) {
    let a = TestApp::spawn_with(&ctx, local()).await;
    let b = TestApp::spawn_on(
        a.db.clone(),
        Options {
            platform_token: a.platform_token.clone(),
            ..local()
        },
    )
    .await;
    let c = catalog(&a).await;
    let receiver = Receiver::start().await;
    endpoint(&a, &c, &receiver.url(), pb::Environment::Test).await;
    for i in 0..20 {
        let s = created(&a, &c, order(vec![line(&c.widget, 1)], "USD")).await;
        complete(if i % 2 == 0 { &a } else { &b }, &s.id, "pay")
            .await
            .unwrap();
    }
    receiver.wait_for(20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 20, "no duplicates");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

/// 410 Gone disables the endpoint: later events are not sent to it.
pub async fn gone_disables_the_endpoint(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(410);
    endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&app, &s.id, "pay").await.unwrap();
    receiver.wait_for(1).await;
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&app, &s.id, "pay").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a disabled endpoint gets nothing more"
    );
    let log = deliveries(&app, &c).await;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].response_status, log[0].success), (410, false));
}

/// Targets registered while private targets were allowed are still refused at send time
/// by a replica that does not allow them — IP literals by the URL rules, host names by
/// what they resolve to.
pub async fn private_targets_refused_at_send_time(ctx: Ctx) {
    let permissive = TestApp::spawn_with(
        &ctx,
        Options {
            webhook_dispatcher: false,
            ..local()
        },
    )
    .await;
    let c = catalog(&permissive).await;
    let receiver = Receiver::start().await;
    let port = receiver.addr.port();
    endpoint(&permissive, &c, &receiver.url(), pb::Environment::Test).await;
    // The machine's own host name is a name, not a literal: only resolving it tells that
    // it points at this machine (via /etc/hosts).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    let resolved: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("the host name resolves")
        .collect();
    assert!(
        resolved
            .iter()
            .all(|a| checkout::domain::webhook::is_forbidden_ip(a.ip())),
        "{host} is local: {resolved:?}"
    );
    endpoint(
        &permissive,
        &c,
        &format!("http://{host}:{port}/hooks"),
        pb::Environment::Test,
    )
    .await;
    let strict = TestApp::spawn_on(
        permissive.db.clone(),
        Options {
            platform_token: permissive.platform_token.clone(),
            ..Default::default()
        },
    )
    .await;
    let s = created(&strict, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    complete(&strict, &s.id, "pay").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = deliveries(&strict, &c).await;
        if log.len() >= 2 || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private target"
    );
    assert!(log.len() >= 2);
    assert!(log.iter().all(|d| !d.success && d.response_status == 0));
    assert!(log.iter().any(|d| d
        .error
        .contains("loopback, private and link-local targets are not allowed")));
    assert!(
        log.iter().any(|d| d
            .error
            .contains("resolves to a loopback, private or link-local address")),
        "{log:?}"
    );
}
