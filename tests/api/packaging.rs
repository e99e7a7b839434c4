//! What the container image and an operator's load test rely on, through the real binaries:
//! `checkout health` (the image's HEALTHCHECK) and `checkout-loadgen`'s error report.
use crate::{
    helpers::{Ctx, TestApp, TestDb},
    operations::Service,
};
use std::{net::SocketAddr, process::Output, time::Duration};
use tokio::process::Command;
use tonic_health::ServingStatus;

/// Runs `checkout health` with these arguments; (exit code, stdout, stderr).
async fn health(args: &[&str]) -> (i32, String, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_checkout"))
        .arg("health")
        .args(args)
        .env_remove("CHECKOUT_HEALTH_ADDR")
        .kill_on_drop(true)
        .output();
    // The probe's own timeouts are at most a few seconds; this only guards the test.
    let out: Output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("checkout health finished")
        .expect("run checkout health");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A probe fails with its own exit code and one line on stderr saying why.
fn assert_fails(got: (i32, String, String), code: i32, why: &str) {
    let (status, out, err) = got;
    assert_eq!(status, code, "stdout: {out}\nstderr: {err}");
    assert!(out.is_empty(), "nothing on stdout when unhealthy: {out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(why), "expected {why:?} in: {err}");
}

pub async fn health_probe_exit_codes(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let addr = app.addr.to_string();

    // SERVING: the server as a whole and a named service, in each address form.
    for target in [
        addr.clone(),
        format!("http://{addr}"),
        format!(":{}", app.addr.port()),
    ] {
        let (status, out, err) = health(&["--addr", &target]).await;
        assert_eq!((status, out.trim()), (0, "SERVING"), "{target}: {err}");
    }
    let named = ["--addr", &addr, "--service", "checkout.v1.CheckoutService"];
    let (status, out, err) = health(&named).await;
    assert_eq!((status, out.trim()), (0, "SERVING"), "{err}");

    // A service the server does not know (tonic-health answers NOT_FOUND).
    let unknown = ["--addr", &addr, "--service", "checkout.v1.NoSuchService"];
    assert_fails(health(&unknown).await, 3, "unknown service");

    // A closed port: bound and released, so nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    assert_fails(health(&["--addr", &closed_addr]).await, 2, "unreachable");

    // A peer that accepts the connection and never speaks HTTP/2: the probe's timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let slow = ["--addr", &silent_addr, "--timeout-ms", "500"];
    assert_fails(health(&slow).await, 3, "timed out after 500 ms");
    holder.abort();

    // NOT_SERVING, as the server reports while it drains: the same tonic-health reporter
    // the server uses, serving over a real listener. (The server's own drain cannot be
    // probed from a new connection: it stops accepting as it turns NOT_SERVING.)
    let draining = not_serving_health_server().await;
    assert_fails(
        health(&["--addr", &draining.to_string()]).await,
        4,
        "NOT_SERVING",
    );
    app.stop(Duration::from_secs(10)).await;
}

/// A gRPC health server whose every status is NOT_SERVING; serves until the runtime ends.
async fn not_serving_health_server() -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Keep the reporter alive: dropping it ends the health service's watch channel.
        let _reporter = reporter;
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    addr
}

/// The demo store's test key and Starter Pack product, from the banner a real `checkout`
/// prints at start (what the README's load-testing example tells the reader to copy).
async fn demo_key_and_product(svc: &Service) -> (String, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines = svc.stdout.lock().unwrap().clone();
        let after = |marker: &str| {
            let i = lines.iter().position(|l| l.contains(marker))?;
            lines.get(i + 1).map(|l| l.trim().to_owned())
        };
        let key = after("Test API key");
        let product = lines
            .iter()
            .find(|l| l.contains("Starter Pack"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned);
        if let (Some(key), Some(product)) = (key, product) {
            return (key, product);
        }
        assert!(std::time::Instant::now() < deadline, "banner: {lines:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the README's `checkout-loadgen` example, briefly, against a demo-seeded service
/// started with these settings; loadgen's summary.
async fn loadgen_against_demo(ctx: &Ctx, env: &[(&str, &str)]) -> String {
    let db = TestDb::create(ctx).await;
    let token = format!("pt_{}", checkout::domain::ids::random_base62(40));
    let mut env = env.to_vec();
    env.push(("CHECKOUT_DEMO_SEED", "true"));
    let svc = Service::start(&db, &token, &env);
    let (key, product) = demo_key_and_product(&svc).await;
    let run = Command::new(env!("CARGO_BIN_EXE_checkout-loadgen"))
        .args(["--addr", &format!("http://{}", svc.addr)])
        .args(["--api-key", &key, "--product", &product])
        .args(["--seconds", "2", "--warmup-ms", "0", "--concurrency", "2"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("loadgen finished")
        .expect("run checkout-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// `name=N` in loadgen's summary.
fn count(summary: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    summary
        .split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|field| field.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}=N in: {summary}"))
}

pub async fn loadgen_counts_errors_by_code(ctx: Ctx) {
    // A tight per-key limit: most calls are refused, and loadgen says with which code.
    let limited = [
        ("CHECKOUT_RATE_LIMIT_PER_SECOND", "2"),
        ("CHECKOUT_RATE_LIMIT_BURST", "2"),
    ];
    let out = loadgen_against_demo(&ctx, &limited).await;
    let errors = count(&out, "errors");
    assert!(count(&out, "ok") >= 1, "the burst is served: {out}");
    let by_code = out
        .lines()
        .find_map(|l| l.strip_prefix("errors by code: "))
        .unwrap_or_else(|| panic!("no per-code line: {out}"));
    let exhausted = count(by_code, "RESOURCE_EXHAUSTED");
    assert!(exhausted > 0, "{out}");
    assert_eq!(exhausted, errors, "every refusal is the rate limit: {out}");
    assert!(out.contains("CHECKOUT_RATE_LIMIT_PER_SECOND=0"), "{out}");

    // As the README runs it: the limit off, no errors at all.
    let out = loadgen_against_demo(&ctx, &[("CHECKOUT_RATE_LIMIT_PER_SECOND", "0")]).await;
    assert_eq!(count(&out, "errors"), 0, "{out}");
    assert!(count(&out, "ok") > 0, "{out}");
    assert!(!out.contains("errors by code"), "{out}");
}
