//! Bodies that are not the protobuf they claim to be are the client's error: INVALID_ARGUMENT
//! with a fixed message (nothing of the body or the decoder's text), counted as such, and the
//! server carries on. Sent over raw HTTP/2, since a gRPC client cannot send them.
use crate::{
    fixtures::{probe, shop},
    helpers::{keyed, Ctx, TestApp},
    operations::{scrape, value},
    raw_h2::{frame, RawClient},
};
use bytes::Bytes;
use prost::Message;
use tonic::Code;

const CREATE: &str = "/checkout.v1.CheckoutService/CreateSession";

fn malformed(name: &str) -> String {
    format!("Malformed request: the message could not be decoded as {name}")
}

/// Length-delimited field `field` holding `bytes`.
fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

/// Bad bodies for a message whose field 1 is a string.
fn bad_string_field_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("invalid UTF-8", ld(1, &[b'c', 0xff, 0xfe])),
        ("wrong wire type", vec![0x08, 0x01]),
        ("truncated field", vec![0x0a, 0x20, b'c', b's']),
        (
            "random bytes",
            b"\xde\xad\xbe\xef\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        ),
    ]
}

/// The API key, environment or platform token a method's service needs.
pub fn credentials<'a>(path: &str, key: &'a str, platform: &'a str) -> Vec<(&'static str, String)> {
    if path.starts_with("/checkout.v1.CheckoutService/") {
        vec![
            ("authorization", format!("Bearer {key}")),
            ("x-context-environment", "test".to_owned()),
        ]
    } else {
        vec![("authorization", format!("Bearer {platform}"))]
    }
}

pub async fn undecodable_bodies_are_invalid_argument(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let s = shop(&app).await;
    let mut raw = RawClient::connect(app.addr).await;
    let mut cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            CREATE,
            "invalid UTF-8 in currency",
            ld(2, &[b'U', 0xc3, 0x28]),
        ),
        // metadata = 11: one entry whose value is not UTF-8.
        (
            CREATE,
            "invalid UTF-8 in a map value",
            ld(11, &[0x0a, 1, b'k', 0x12, 2, 0xc3, 0x28]),
        ),
        (
            CREATE,
            "invalid UTF-8 in a map key",
            ld(11, &[0x0a, 2, 0xff, 0xfe, 0x12, 1, b'v']),
        ),
        (CREATE, "wrong wire type", vec![0x10, 0x01]),
        (CREATE, "truncated field", vec![0x12, 0x10, b'U', b'S']),
        (
            CREATE,
            "random bytes",
            b"\xde\xad\xbe\xef\x00\x01garbage\xff".to_vec(),
        ),
    ];
    for path in [
        "/checkout.v1.CheckoutService/GetSession",
        "/checkout.v1.HostedCheckoutService/CompleteSession",
        "/checkout.v1.AdminService/GetStore",
    ] {
        for (what, body) in bad_string_field_bodies() {
            cases.push((path, what, body));
        }
    }
    for (path, what, body) in cases {
        let name = match path {
            CREATE => "CreateSessionRequest",
            "/checkout.v1.CheckoutService/GetSession" => "GetSessionRequest",
            "/checkout.v1.HostedCheckoutService/CompleteSession" => "CompleteSessionRequest",
            _ => "GetStoreRequest",
        };
        let creds = credentials(path, &s.test_key, &app.platform_token);
        let headers: Vec<(&str, &str)> = creds.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = raw.call(path, &headers, frame(0, &body)).await;
        assert_eq!(
            (reply.code, reply.message.as_str()),
            (Some(Code::InvalidArgument as i32), malformed(name).as_str()),
            "{path}: {what}"
        );
    }
    // Counted as client errors, not server failures.
    let metrics = scrape(app.metrics_addr).await;
    let counted = |code: &str| {
        value(
            &metrics,
            &format!("checkout_rpc_requests_total{{method=\"checkout.v1.CheckoutService/CreateSession\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(counted("INVALID_ARGUMENT"), 6.0, "{metrics}");
    assert_eq!(counted("INTERNAL"), 0.0, "{metrics}");
    // The connection and the server are fine afterwards.
    let after = app
        .checkout()
        .get_session(keyed(probe(), &s.test_key, "test"))
        .await;
    assert_eq!(after.unwrap_err().code(), Code::NotFound);
}

pub async fn framing_and_content_type_errors(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let s = shop(&app).await;
    let mut raw = RawClient::connect(app.addr).await;
    let auth = format!("Bearer {}", s.test_key);
    let base = [
        ("authorization", auth.as_str()),
        ("x-context-environment", "test"),
    ];
    let valid = probe().encode_to_vec();
    let get = "/checkout.v1.CheckoutService/GetSession";

    // The gRPC compression spec: a compressed flag without grpc-encoding MUST fail with
    // INTERNAL describing the flag (tonic's fixed text; nothing of the body).
    let reply = raw.call(get, &base, frame(1, &valid)).await;
    assert_eq!(reply.code, Some(Code::Internal as i32), "{reply:?}");
    assert!(reply.message.contains("compressed-flag"), "{reply:?}");

    // An encoding the server does not support: UNIMPLEMENTED.
    let mut headers = base.to_vec();
    headers.push(("grpc-encoding", "br"));
    let reply = raw.call(get, &headers, frame(1, &valid)).await;
    assert_eq!(reply.code, Some(Code::Unimplemented as i32), "{reply:?}");

    // Not gRPC at all: HTTP 415 with INVALID_ARGUMENT, as grpc-go answers.
    // (application/grpc-web is gRPC-Web since SPEC §12, not "not gRPC": see below.)
    for content_type in ["application/json", "text/plain"] {
        let mut headers = vec![("content-type", content_type), ("te", "trailers")];
        headers.extend_from_slice(&base);
        let reply = raw
            .call_exact(
                get,
                &headers,
                Bytes::from_static(b"{\"sessionId\":\"cs_x\"}"),
            )
            .await;
        assert_eq!(reply.http_status, 415, "{content_type}: {reply:?}");
        assert_eq!(
            (reply.code, reply.message.as_str()),
            (
                Some(Code::InvalidArgument as i32),
                "Unsupported content-type: use application/grpc"
            ),
            "{content_type}"
        );
    }
    // gRPC-Web reads the same body as frames, like gRPC: its first byte (`{`) is no valid
    // compression flag, the same fixed INTERNAL framing error as over gRPC.
    let mut headers = vec![("content-type", "application/grpc-web")];
    headers.extend_from_slice(&base);
    let reply = raw
        .call_exact(
            get,
            &headers,
            Bytes::from_static(b"{\"sessionId\":\"cs_x\"}"),
        )
        .await;
    assert_eq!(reply.code, Some(Code::Internal as i32), "{reply:?}");
    assert!(
        reply.message.contains("invalid compression flag"),
        "{reply:?}"
    );
    // application/grpc+proto is gRPC too.
    let mut headers = vec![
        ("content-type", "application/grpc+proto"),
        ("te", "trailers"),
    ];
    headers.extend_from_slice(&base);
    let reply = raw.call_exact(get, &headers, frame(0, &valid)).await;
    assert_eq!(reply.code, Some(Code::NotFound as i32), "{reply:?}");
}
