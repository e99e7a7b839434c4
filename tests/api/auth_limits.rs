//! Failed authentications are limited per peer address; valid keys are never slowed.
use crate::{
    fixtures::{probe, shop},
    helpers::{assert_status, keyed, Ctx, Options, TestApp},
    raw_h2::{frame, RawClient},
};
use checkout::pb;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

const BURST: u32 = 20;

/// The refusal message, which carries the same wait as its RetryInfo.
fn limited_message(wait: std::time::Duration) -> String {
    format!(
        "Too many failed authentications from this address; retry in {} ms",
        wait.as_millis().max(1)
    )
}

pub async fn failed_authentications_are_limited_per_peer(ctx: Ctx) {
    // One failure a minute after the burst: none refills while the 300 calls run.
    let app = TestApp::spawn_with(
        &ctx,
        Options {
            auth_failures: Some((1, BURST)),
            ..Default::default()
        },
    )
    .await;
    let shop = shop(&app).await;
    let mut codes = Vec::new();
    let mut last_limited = None;
    for _ in 0..300 {
        let bogus = format!("sk_test_{}", checkout::domain::ids::random_base62(43));
        let status = app
            .checkout()
            .get_session(keyed(probe(), &bogus, "test"))
            .await
            .expect_err("a bogus key never passes");
        codes.push(status.code());
        if status.code() == Code::ResourceExhausted {
            last_limited = Some(status);
        }
    }
    let unauthenticated = codes.iter().filter(|c| **c == Code::Unauthenticated);
    assert_eq!(unauthenticated.count(), BURST as usize, "{codes:?}");
    assert!(
        codes[..BURST as usize]
            .iter()
            .all(|c| *c == Code::Unauthenticated),
        "the burst comes first: {codes:?}"
    );
    assert!(
        codes[BURST as usize..]
            .iter()
            .all(|c| *c == Code::ResourceExhausted),
        "{codes:?}"
    );
    let limited = last_limited.expect("refusals");
    let wait = limited
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(60));
    assert_eq!(limited.message(), limited_message(wait));

    // A valid key from the same client, right away: served, not slowed.
    for _ in 0..5 {
        let ok = app
            .checkout()
            .get_session(keyed(probe(), &shop.test_key, "test"))
            .await;
        assert_status(ok, Code::NotFound, "Session not found");
    }
    // Every service's failed authentications count: a wrong platform token is refused too.
    let wrong = crate::helpers::with_md(
        pb::GetStoreRequest {
            store_id: shop.store_id.clone(),
        },
        &[("authorization", "Bearer pt_wrong")],
    );
    let status = app.admin().get_store(wrong).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Another peer address has its own budget.
    let mut other = RawClient::connect_from(app.addr, "127.0.0.2".parse().unwrap()).await;
    let bogus = format!(
        "Bearer sk_test_{}",
        checkout::domain::ids::random_base62(43)
    );
    let reply = other
        .call(
            "/checkout.v1.CheckoutService/GetSession",
            &[("authorization", &bogus), ("x-context-environment", "test")],
            frame(0, &probe().encode_to_vec()),
        )
        .await;
    assert_eq!(
        (reply.code, reply.message.as_str()),
        (Some(Code::Unauthenticated as i32), "Unauthorized")
    );
}
