//! What an operator reads: one log line per RPC with its request id, webhook failures at
//! WARN, no colour codes in a pipe, and spans that show failure — from the real binary.
use crate::{
    fixtures::{catalog, created, line, order, probe},
    helpers::{keyed, Ctx, TestDb},
    operations::{client_app, otlp, Service},
    receiver::Receiver,
};
use checkout::pb;
use std::time::{Duration, Instant};
use tonic::Code;

/// Waits until a log line satisfies `pred`; that line.
async fn log_line(svc: &Service, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = svc.stderr.lock().unwrap().iter().find(|l| pred(l)) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what} in:\n{}",
            svc.stderr.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn new_token() -> String {
    format!("pt_{}", checkout::domain::ids::random_base62(40))
}

fn request_id(md: &tonic::metadata::MetadataMap) -> String {
    md.get("x-request-id")
        .expect("x-request-id in the response")
        .to_str()
        .unwrap()
        .to_owned()
}

pub async fn every_rpc_is_logged_with_its_request_id(ctx: Ctx) {
    let db = TestDb::create(&ctx).await;
    let token = new_token();
    let env = [("CHECKOUT_LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    let svc = Service::start(&db, &token, &env);
    let app = client_app(db.clone(), &svc, &token).await;
    let c = catalog(&app).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = keyed(probe(), &c.shop.test_key, "test");
    let md = req.metadata_mut();
    md.insert("x-request-id", "order-4711.a".parse().unwrap());
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    md.insert("traceparent", traceparent.parse().unwrap());
    let status = app.checkout().get_session(req).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(request_id(status.metadata()), "order-4711.a", "echoed");
    // None given, or one that could forge a log line: a fresh one, echoed on success too.
    let reply = app
        .checkout()
        .create_session(keyed(
            order(vec![line(&c.widget, 1)], "USD"),
            &c.shop.test_key,
            "test",
        ))
        .await
        .expect("create");
    let generated = request_id(reply.metadata());
    assert_eq!(generated.len(), 22, "{generated}");
    let mut req = keyed(probe(), &c.shop.test_key, "test");
    req.metadata_mut()
        .insert("x-request-id", "a b\"c".parse().unwrap());
    let status = app.checkout().get_session(req).await.unwrap_err();
    assert_ne!(request_id(status.metadata()), "a b\"c");

    let found = log_line(&svc, "for order-4711.a", |l| l.contains("order-4711.a")).await;
    let line: serde_json::Value = serde_json::from_str(&found).expect("a JSON log line");
    let f = &line["fields"];
    assert_eq!(line["level"], "INFO", "{found}");
    assert_eq!(line["target"], "checkout::rpc", "{found}");
    assert_eq!(
        f["method"], "checkout.v1.CheckoutService/GetSession",
        "{found}"
    );
    assert_eq!(f["code"], "NOT_FOUND", "{found}");
    assert_eq!(f["trace_id"], trace, "{found}");
    assert!(f["duration_ms"].as_f64().is_some(), "{found}");
    assert!(
        f["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{found}"
    );
    let created = log_line(&svc, "for the create", |l| l.contains(&generated)).await;
    assert!(created.contains(r#""code":"OK""#), "{created}");
}

/// Text logs into a pipe carry no ANSI colour codes; a failed webhook delivery is a WARN
/// naming the endpoint and the HTTP status.
pub async fn webhook_failures_warn_and_pipes_get_no_colour(ctx: Ctx) {
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let db = TestDb::create(&ctx).await;
    let token = new_token();
    let env = [
        ("RUST_LOG", "info"),
        ("CHECKOUT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("CHECKOUT_WEBHOOK_POLL_MS", "100"),
    ];
    let svc = Service::start(&db, &token, &env);
    let app = client_app(db.clone(), &svc, &token).await;
    let c = catalog(&app).await;
    let endpoint = app
        .admin()
        .create_webhook_endpoint(app.platform(pb::CreateWebhookEndpointRequest {
            store_id: c.shop.store_id.clone(),
            environment: pb::Environment::Test as i32,
            url: receiver.url(),
        }))
        .await
        .expect("endpoint")
        .into_inner();
    let endpoint_id = endpoint.id;
    created(&app, &c, order(vec![line(&c.free, 1)], "USD")).await;
    let warn = log_line(&svc, "for the failed delivery", |l| {
        l.contains("webhook delivery failed")
    })
    .await;
    assert!(warn.contains("WARN"), "{warn}");
    assert!(warn.contains(&endpoint_id), "{warn}");
    assert!(warn.contains("status=500"), "{warn}");
    let rpc = log_line(&svc, "for the create", |l| {
        l.contains("checkout::rpc") && l.contains("CheckoutService/CreateSession")
    })
    .await;
    assert!(rpc.contains(r#"code="OK""#), "{rpc}");
    let log = svc.stderr.lock().unwrap().join("\n");
    assert!(!log.contains('\u{1b}'), "colour codes in a pipe:\n{log}");
}

/// Server faults mark their span as failed (OpenTelemetry's gRPC conventions), client errors
/// do not; OTEL_SERVICE_NAME names the exporting service.
pub async fn spans_show_server_faults(ctx: Ctx) {
    let (collector, collector_addr) = otlp::start().await;
    let db = TestDb::create(&ctx).await;
    let token = new_token();
    let endpoint = format!("http://{collector_addr}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "checkout-eu-1"),
    ];
    let svc = Service::start(&db, &token, &env);
    let app = client_app(db.clone(), &svc, &token).await;
    let c = catalog(&app).await;
    let r = app
        .checkout()
        .get_session(keyed(probe(), &c.shop.test_key, "test"))
        .await;
    assert_eq!(r.unwrap_err().code(), Code::NotFound);
    // A method the service does not have: UNIMPLEMENTED, a server-side failure.
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<pb::GetSessionRequest, pb::Session>::default();
    let path = http::uri::PathAndQuery::from_static("/checkout.v1.CheckoutService/Nope");
    let req = keyed(probe(), &c.shop.test_key, "test");
    let r = grpc.unary(req, path, codec).await;
    assert_eq!(r.unwrap_err().code(), Code::Unimplemented);
    svc.sigterm();
    assert!(svc.wait(Duration::from_secs(10)).await.success());
    let spans = collector.0.lock().unwrap().clone();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("no {name} span among {spans:?}"))
            .clone()
    };
    // Paths the server does not serve share one name (bounded span and label sets).
    let unimplemented = find("unknown");
    assert_eq!(unimplemented.3, 2, "status ERROR");
    let not_found = find("checkout.v1.CheckoutService/GetSession");
    assert_eq!(not_found.3, 0, "a client error leaves the status unset");
    assert!(not_found.4.contains("checkout-eu-1"), "{}", not_found.4);
}
