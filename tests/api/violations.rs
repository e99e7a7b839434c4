//! Every violation of a request in one BadRequest, with `lines[i].field` paths; the message
//! is the first violation's.
use crate::{
    fixtures::{catalog, create, line, order},
    helpers::{bad_request_fields, Ctx, TestApp},
};
use checkout::pb;
use tonic::Code;

pub async fn every_violation_in_one_reply(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let req = pb::CreateSessionRequest {
        buyer_email: "not-an-email".into(),
        expires_in_seconds: Some(5),
        ..order(
            vec![line("BAD", 1), line(&c.widget, 0), line(&c.widget, 1)],
            "usd",
        )
    };
    let status = create(&app, &c, req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("Invalid currency format: \"usd\""),
        "the first violation's message: {status:?}"
    );
    assert_eq!(
        bad_request_fields(&status),
        [
            "currency",
            "lines[0].product_id",
            "lines[1].quantity",
            "buyer_email",
            "expires_in_seconds"
        ]
    );
    // Missing fields name their line.
    let req = order(vec![line(&c.widget, 1), line("", 1)], "");
    let status = create(&app, &c, req).await.unwrap_err();
    assert_eq!(
        status.message(),
        "Missing required fields: productId, currency"
    );
    assert_eq!(
        bad_request_fields(&status),
        ["lines[1].product_id", "currency"]
    );
    // A hundred bad lines: as many violations as fit, the error still small.
    let lines = (0..100).map(|i| line(&format!("BAD{i}"), 0)).collect();
    let status = create(&app, &c, order(lines, "USD")).await.unwrap_err();
    let fields = bad_request_fields(&status);
    assert!(fields.len() >= 10, "{fields:?}");
    assert_eq!(fields[..2], ["lines[0].product_id", "lines[0].quantity"]);
    assert!(status.message().len() + status.details().len() < 8 * 1024);
}
