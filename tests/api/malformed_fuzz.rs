//! A seeded fuzz loop over every checkout.v1 method: a few thousand generated bodies that
//! do not decode as the method's request message. Each must be INVALID_ARGUMENT with the
//! fixed message (never INTERNAL or UNKNOWN), and the server must answer a valid call after.
use crate::{
    fixtures::{probe, shop},
    helpers::{keyed, Ctx, TestApp},
    malformed::credentials,
    raw_h2::{frame, RawClient},
};
use checkout::pb;
use prost::Message;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::{Duration, Instant};
use tonic::Code;

type Decodes = fn(&[u8]) -> bool;

macro_rules! methods {
    ($($service:literal / $method:ident : $msg:ident),* $(,)?) => {
        [$((
            concat!("/checkout.v1.", $service, "/", stringify!($method)),
            stringify!($msg),
            (|b: &[u8]| pb::$msg::decode(b).is_ok()) as Decodes,
        )),*]
    };
}

const BODIES: usize = 3000;
/// A bound on the loop, not a performance assertion: slow machines fuzz fewer bodies.
const TIME_BOUND: Duration = Duration::from_secs(60);

/// One generated body; most of them cannot decode (those that do are skipped).
fn generate(rng: &mut StdRng) -> Vec<u8> {
    let field = rng.random_range(1u8..16);
    match rng.random_range(0..5) {
        // Random bytes.
        0 => (0..rng.random_range(1..48)).map(|_| rng.random()).collect(),
        // A string/bytes/message field announcing more bytes than follow.
        1 => {
            let len = rng.random_range(8u8..120);
            let mut b = vec![(field << 3) | 2, len];
            b.extend((0..rng.random_range(0..len)).map(|_| rng.random::<u8>()));
            b
        }
        // A length-delimited field full of invalid UTF-8 (a string field rejects it).
        2 => {
            let len = rng.random_range(1u8..40);
            let mut b = vec![(field << 3) | 2, len];
            b.extend((0..len).map(|_| rng.random_range(0x80u8..=0xff)));
            b
        }
        // Wire types 6 and 7 do not exist; 3/4 are groups no proto3 message has.
        3 => vec![(field << 3) | rng.random_range(3u8..8), rng.random()],
        // A varint that never ends.
        _ => {
            let mut b = vec![field << 3];
            b.extend(std::iter::repeat_n(0xff, rng.random_range(10..20)));
            b
        }
    }
}

pub async fn generated_bad_bodies_never_fail_the_server(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let s = shop(&app).await;
    let methods = methods![
        "CheckoutService" / CreateSession: CreateSessionRequest,
        "CheckoutService" / GetSession: GetSessionRequest,
        "CheckoutService" / WatchSession: WatchSessionRequest,
        "CheckoutService" / ListSessions: ListSessionsRequest,
        "CheckoutService" / ExpireSession: ExpireSessionRequest,
        "HostedCheckoutService" / CompleteSession: CompleteSessionRequest,
        "HostedCheckoutService" / CancelSession: CancelSessionRequest,
        "AdminService" / CreateStore: CreateStoreRequest,
        "AdminService" / GetStore: GetStoreRequest,
        "AdminService" / UpdateStore: UpdateStoreRequest,
        "AdminService" / CreateApiKey: CreateApiKeyRequest,
        "AdminService" / RevokeApiKey: RevokeApiKeyRequest,
        "AdminService" / CreateProduct: CreateProductRequest,
        "AdminService" / GetProduct: GetProductRequest,
        "AdminService" / UpdateProduct: UpdateProductRequest,
        "AdminService" / CreateProductVersion: CreateProductVersionRequest,
        "AdminService" / ActivateProductVersion: ActivateProductVersionRequest,
        "AdminService" / CreateCoupon: CreateCouponRequest,
        "AdminService" / CreateWebhookEndpoint: CreateWebhookEndpointRequest,
        "AdminService" / ListWebhookDeliveries: ListWebhookDeliveriesRequest,
    ];
    let mut rng = StdRng::seed_from_u64(0x00c0_ffee);
    let mut raw = RawClient::connect(app.addr).await;
    let started = Instant::now();
    let (mut sent, mut per_method) = (0, vec![0; methods.len()]);
    while sent < BODIES && started.elapsed() < TIME_BOUND {
        let i = rng.random_range(0..methods.len());
        let (path, name, decodes) = methods[i];
        let body = generate(&mut rng);
        if decodes(&body) {
            continue;
        }
        let creds = credentials(path, &s.test_key, &app.platform_token);
        let headers: Vec<(&str, &str)> = creds.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = raw.call(path, &headers, frame(0, &body)).await;
        let expected = format!("Malformed request: the message could not be decoded as {name}");
        assert_eq!(
            (reply.code, reply.message.as_str()),
            (Some(Code::InvalidArgument as i32), expected.as_str()),
            "{path} with body {body:02x?}"
        );
        sent += 1;
        per_method[i] += 1;
    }
    // Enough of a run to mean something, over every method.
    assert!(sent >= 200, "only {sent} bodies in {TIME_BOUND:?}");
    assert!(per_method.iter().all(|n| *n > 0), "{per_method:?}");
    let after = app
        .checkout()
        .get_session(keyed(probe(), &s.test_key, "test"))
        .await;
    assert_eq!(after.unwrap_err().code(), Code::NotFound);
}
