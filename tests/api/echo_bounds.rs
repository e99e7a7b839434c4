//! Client values quoted in errors are cut (64 characters and `…`), so a huge value never
//! comes back as huge metadata: each error's message plus details stays under 8 KiB, which
//! gRPC clients accept (grpcio refuses metadata past its limit with RESOURCE_EXHAUSTED).
use crate::{
    fixtures::{catalog, create, line, order},
    helpers::{Ctx, TestApp},
};
use checkout::pb;
use tonic::Code;

const HUGE: usize = 200_000;
const METADATA_LIMIT: usize = 8 * 1024;

/// The first 64 characters of `value` and the ellipsis, as messages quote it.
fn cut(value: &str) -> String {
    format!("{}…", &value[..64])
}

#[track_caller]
fn assert_short(reply: crate::fixtures::Reply, code: Code, message: &str) {
    let status = reply.expect_err("expected the call to fail");
    assert_eq!((status.code(), status.message()), (code, message));
    let size = status.message().len() + status.details().len();
    assert!(size < METADATA_LIMIT, "error metadata of {size} bytes");
}

pub async fn huge_values_are_cut_in_errors(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;

    let currency = "U".repeat(HUGE);
    let reply = create(&app, &c, order(vec![line(&c.widget, 1)], &currency)).await;
    let message = format!(
        "Invalid currency format: \"{}\". Must be 3 uppercase letters (e.g., \"USD\", \"EUR\", \"JPY\")",
        cut(&currency)
    );
    assert_short(reply, Code::InvalidArgument, &message);

    let product = format!("PROD_{}", "x".repeat(HUGE));
    let reply = create(&app, &c, order(vec![line(&product, 1)], "USD")).await;
    let message = format!("Expected format: PROD_xxx, got \"{}\"", cut(&product));
    assert_short(reply, Code::InvalidArgument, &message);

    let code = "C".repeat(HUGE);
    let req = pb::CreateSessionRequest {
        coupon_code: code.clone(),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let reply = create(&app, &c, req).await;
    // Longer than any coupon code can be: refused before it is looked up (or quoted).
    assert_short(
        reply,
        Code::InvalidArgument,
        "coupon_code must be at most 64 characters",
    );

    let url = format!("https://{}.example.com/done", "a".repeat(HUGE));
    let req = pb::CreateSessionRequest {
        success_url: url,
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let reply = create(&app, &c, req).await;
    assert_short(reply, Code::InvalidArgument, "successUrl: not a valid URL");

    // Under the URL length limit, but an origin no one would allow-list.
    let url = format!("https://{}.com/done", "a".repeat(1500));
    let req = pb::CreateSessionRequest {
        success_url: url.clone(),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let reply = create(&app, &c, req).await;
    let origin = &url[..url.len() - "/done".len()];
    let message = format!(
        "successUrl: URL origin ({}) is not in the allow-list",
        cut(origin)
    );
    assert_short(reply, Code::InvalidArgument, &message);

    let key = "k".repeat(HUGE);
    let req = pb::CreateSessionRequest {
        metadata: [(key.clone(), "v".to_owned())].into(),
        ..order(vec![line(&c.widget, 1)], "USD")
    };
    let reply = create(&app, &c, req).await;
    let message = format!(
        "metadata: keys must be 1 to 40 characters (\"{}\")",
        cut(&key)
    );
    assert_short(reply, Code::InvalidArgument, &message);

    // Multi-byte characters are cut on a character boundary, not a byte.
    let currency = "€".repeat(HUGE / 4);
    let reply = create(&app, &c, order(vec![line(&c.widget, 1)], &currency)).await;
    let message = format!(
        "Invalid currency format: \"{}…\". Must be 3 uppercase letters (e.g., \"USD\", \"EUR\", \"JPY\")",
        "€".repeat(64)
    );
    assert_short(reply, Code::InvalidArgument, &message);
}
