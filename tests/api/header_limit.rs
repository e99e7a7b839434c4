//! The request header limit (src/grpc/header_limit.rs): 16 KiB of headers, answered with
//! RESOURCE_EXHAUSTED; only above h2's own 64 KiB limit does a client get the bare HTTP 431.
use crate::helpers::{with_md, Ctx, TestApp};
use checkout::pb;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

const KIB: usize = 1024;

pub async fn oversized_metadata_is_resource_exhausted(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let health = |pad: usize| {
        let mut client = HealthClient::new(app.channel.clone());
        let pad = "p".repeat(pad);
        async move {
            client
                .check(with_md(HealthCheckRequest::default(), &[("x-pad", &pad)]))
                .await
        }
    };
    // Under the limit: served.
    let ok = health(12 * KIB).await.unwrap().into_inner();
    assert_eq!(ok.status, ServingStatus::Serving as i32);
    // Over it (the 16 KB header of the issue): a gRPC status the client can act on.
    for pad in [16 * KIB, 40 * KIB] {
        let status = health(pad).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{pad}: {status:?}");
        assert!(
            status.message().contains("the limit is 16384"),
            "{pad}: {status:?}"
        );
    }
    // Refused before authentication: an authenticated method gets the same answer, not
    // UNAUTHENTICATED or a database lookup.
    let pad = "p".repeat(20 * KIB);
    let status = app
        .checkout()
        .get_session(with_md(
            pb::GetSessionRequest::default(),
            &[("authorization", "Bearer sk_test_nope"), ("x-pad", &pad)],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Above h2's limit h2 answers HTTP 431 itself, before any gRPC code runs: no
    // grpc-status, so the client makes UNKNOWN of it. The connection stays usable.
    let status = health(100 * KIB).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert!(status.message().contains("431"), "{status:?}");
    let ok = health(0).await.unwrap().into_inner();
    assert_eq!(ok.status, ServingStatus::Serving as i32);
}
