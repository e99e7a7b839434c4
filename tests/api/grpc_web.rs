//! Browsers over gRPC-Web (SPEC §12), spoken as a browser does: HTTP/1.1 on the same port,
//! `application/grpc-web(+proto|-text)`, a preflight first, the store-slug credential.
use crate::{
    fixtures::{catalog, line, order, Catalog},
    helpers::{keyed, Ctx, Options, TestApp},
    lifecycle::complete,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use checkout::pb;
use prost::Message;
use std::collections::HashMap;

/// A return origin of the catalog store (so its pages may read replies).
const STORE_ORIGIN: &str = "http://localhost:3000";
const OPERATOR_ORIGIN: &str = "https://ops.example.org";
const OTHER_ORIGIN: &str = "https://elsewhere.example";

fn frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut f = vec![0u8];
    f.extend((body.len() as u32).to_be_bytes());
    f.extend(body);
    f
}

/// gRPC-Web-text bodies are base64 per chunk, padding included: decode quantum by quantum.
fn unbase64(text: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    clean
        .chunks(4)
        .flat_map(|q| STANDARD.decode(q).expect("base64 quantum"))
        .collect()
}

/// The frames of a gRPC-Web body: messages, and the trailers (flag 0x80) as a map.
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, HashMap<String, String>) {
    let (mut messages, mut trailers) = (Vec::new(), HashMap::new());
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let (flag, payload) = (body[0], &body[5..5 + len]);
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

struct Web {
    status: u16,
    headers: reqwest::header::HeaderMap,
    messages: Vec<Vec<u8>>,
    /// Trailers from the body, or the headers of a trailers-only reply.
    grpc: HashMap<String, String>,
}

impl Web {
    fn allow_origin(&self) -> Option<&str> {
        self.headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap())
    }

    fn grpc_status(&self) -> &str {
        self.grpc
            .get("grpc-status")
            .map(String::as_str)
            .unwrap_or("missing")
    }
}

fn request(
    app: &TestApp,
    method: &str,
    body: Vec<u8>,
    text: bool,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let url = format!("http://{}/checkout.v1.CheckoutService/{method}", app.addr);
    let (content_type, body) = if text {
        (
            "application/grpc-web-text",
            STANDARD.encode(body).into_bytes(),
        )
    } else {
        ("application/grpc-web+proto", body)
    };
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        // The reply's encoding follows Accept, as grpc-web clients send it.
        .header("accept", content_type)
        .header("x-grpc-web", "1")
        .header("x-user-agent", "grpc-web-javascript/0.1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body)
}

async fn web(
    app: &TestApp,
    method: &str,
    msg: &impl Message,
    text: bool,
    headers: &[(&str, &str)],
) -> Web {
    let res = request(app, method, frame(msg), text, headers)
        .send()
        .await
        .expect("HTTP/1.1 gRPC-Web request");
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let raw = res.bytes().await.unwrap();
    let body = if text { unbase64(&raw) } else { raw.to_vec() };
    let (messages, mut grpc) = frames(&body);
    for key in ["grpc-status", "grpc-message"] {
        if let Some(v) = headers.get(key) {
            grpc.insert(key.into(), v.to_str().unwrap().to_owned());
        }
    }
    Web {
        status,
        headers,
        messages,
        grpc,
    }
}

fn slug_headers<'a>(c: &'a Catalog, origin: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("x-store-slug", c.shop.slug.as_str()),
        ("x-context-environment", "test"),
        ("origin", origin),
    ]
}

async fn spawn(ctx: &Ctx) -> TestApp {
    let opts = Options {
        cors_origins: vec![OPERATOR_ORIGIN.into()],
        ..Default::default()
    };
    TestApp::spawn_with(ctx, opts).await
}

pub async fn preflight_is_answered_for_any_origin(ctx: Ctx) {
    let app = spawn(&ctx).await;
    let res = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!(
                "http://{}/checkout.v1.CheckoutService/CreateSession",
                app.addr
            ),
        )
        .header("origin", OTHER_ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-store-slug,x-context-environment,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{res:?}");
    let h = res.headers();
    let get = |k: &str| {
        h.get(k)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(get("access-control-allow-origin"), OTHER_ORIGIN);
    assert!(
        get("access-control-allow-credentials").is_empty(),
        "never credentials"
    );
    let allowed = get("access-control-allow-headers");
    for header in [
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "x-store-slug",
        "x-context-environment",
        "idempotency-key",
    ] {
        assert!(allowed.contains(header), "{header} missing from {allowed}");
    }
    let exposed = get("access-control-expose-headers");
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{header} missing from {exposed}");
    }
}

pub async fn storefront_calls_over_grpc_web(ctx: Ctx) {
    let app = spawn(&ctx).await;
    let c = catalog(&app).await;
    let req = order(vec![line(&c.widget, 2)], "USD");
    // The store's own origin: the page may read the reply.
    let created = web(
        &app,
        "CreateSession",
        &req,
        false,
        &slug_headers(&c, STORE_ORIGIN),
    )
    .await;
    assert_eq!(created.status, 200);
    assert_eq!(created.grpc_status(), "0", "{:?}", created.grpc);
    assert_eq!(created.allow_origin(), Some(STORE_ORIGIN));
    let exposed = created.headers["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("grpc-status"), "{exposed}");
    let reply = pb::CreateSessionResponse::decode(&created.messages[0][..]).unwrap();
    let session = reply.session.expect("session");
    assert_eq!(session.status(), pb::SessionStatus::Open);
    // gRPC-Web-text (base64), as browsers without binary support send it.
    let get = pb::GetSessionRequest {
        session_id: session.id.clone(),
    };
    let read = web(
        &app,
        "GetSession",
        &get,
        true,
        &slug_headers(&c, STORE_ORIGIN),
    )
    .await;
    assert_eq!(read.grpc_status(), "0", "{:?}", read.grpc);
    let got = pb::Session::decode(&read.messages[0][..]).unwrap();
    assert_eq!(got.id, session.id);
    assert_eq!(got.amount_total, 3998);
    // An operator-wide origin may read any store's replies; any other may not.
    let ops = web(
        &app,
        "GetSession",
        &get,
        false,
        &slug_headers(&c, OPERATOR_ORIGIN),
    )
    .await;
    assert_eq!(ops.allow_origin(), Some(OPERATOR_ORIGIN));
    let other = web(
        &app,
        "GetSession",
        &get,
        false,
        &slug_headers(&c, OTHER_ORIGIN),
    )
    .await;
    assert_eq!(other.allow_origin(), None, "{:?}", other.headers);
    assert!(other.headers.get("access-control-allow-origin").is_none());
    // Errors carry their status in a form a browser can read.
    let missing = pb::GetSessionRequest {
        session_id: "cs_doesnotexist000000000".into(),
    };
    let nf = web(
        &app,
        "GetSession",
        &missing,
        false,
        &slug_headers(&c, STORE_ORIGIN),
    )
    .await;
    assert_eq!(nf.grpc_status(), "5", "{:?}", nf.grpc);
    assert_eq!(nf.allow_origin(), Some(STORE_ORIGIN));
}

pub async fn watch_streams_over_grpc_web(ctx: Ctx) {
    let app = spawn(&ctx).await;
    let c = catalog(&app).await;
    let session = crate::fixtures::created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let req = pb::WatchSessionRequest {
        session_id: session.id.clone(),
    };
    let mut res = request(
        &app,
        "WatchSession",
        frame(&req),
        false,
        &slug_headers(&c, STORE_ORIGIN),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"]
            .to_str()
            .unwrap(),
        STORE_ORIGIN
    );
    let mut body = Vec::new();
    let mut completed = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), res.chunk())
            .await
            .expect("the stream ends in time")
            .unwrap();
        let Some(chunk) = chunk else { break };
        body.extend_from_slice(&chunk);
        let (messages, _) = frames(&body);
        if messages.len() == 1 && !completed {
            // The first event (the current state) arrived live: now end the session.
            complete(&app, &session.id, "pay_web_1")
                .await
                .expect("complete");
            completed = true;
        }
    }
    let (messages, trailers) = frames(&body);
    assert_eq!(
        trailers.get("grpc-status").map(String::as_str),
        Some("0"),
        "{trailers:?}"
    );
    let statuses: Vec<_> = messages
        .iter()
        .map(|m| {
            pb::SessionEvent::decode(&m[..])
                .unwrap()
                .session
                .unwrap()
                .status()
        })
        .collect();
    assert_eq!(
        statuses,
        [pb::SessionStatus::Open, pb::SessionStatus::Completed]
    );
}

pub async fn secret_keys_are_refused_from_browsers(ctx: Ctx) {
    let app = spawn(&ctx).await;
    let c = catalog(&app).await;
    let bearer = format!("Bearer {}", c.shop.test_key);
    let headers = [
        ("authorization", bearer.as_str()),
        ("x-context-environment", "test"),
        ("origin", STORE_ORIGIN),
    ];
    let probe = crate::fixtures::probe();
    let refused = web(&app, "GetSession", &probe, false, &headers).await;
    assert_eq!(refused.grpc_status(), "7", "{:?}", refused.grpc);
    assert_eq!(
        refused.grpc.get("grpc-message").map(String::as_str),
        Some("Secret%20API%20keys%20must%20not%20be%20used%20from%20a%20browser")
    );
    // Over gRPC too: an Origin header means a browser, whatever the protocol.
    let mut req = keyed(probe.clone(), &c.shop.test_key, "test");
    req.metadata_mut()
        .insert("origin", STORE_ORIGIN.parse().unwrap());
    let status = app.checkout().get_session(req).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            tonic::Code::PermissionDenied,
            "Secret API keys must not be used from a browser"
        )
    );
    // The same key from a backend (no Origin) is served.
    let r = app
        .checkout()
        .get_session(keyed(probe, &c.shop.test_key, "test"))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::NotFound);
}
