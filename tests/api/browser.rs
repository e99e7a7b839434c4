//! The example storefront (examples/storefront) in a real browser: headless Chromium, driven
//! by examples/storefront/e2e/drive.mjs (playwright-core), loads the page from a static server
//! on 127.0.0.1:0 and calls the service over gRPC-Web with the store slug (SPEC §12).
//! Without node, Chromium or the example's `npm ci`, the test says so plainly and passes,
//! except in CI (CI=true), where it must run; `.ci/run` installs all three.
use crate::{
    fixtures::{product, release, shop, Shop},
    helpers::{Ctx, Options, TestApp},
    lifecycle::complete,
};
use bytes::Bytes;
use checkout::pb;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use std::{
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// An operator-wide origin that is neither page's: the disallowed page must not pass through it.
const OPERATOR_ORIGIN: &str = "https://ops.example.org";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/storefront")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tool() -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node not found (install Node.js 20)".into());
    }
    if !chromium().exists() {
        return Some(format!(
            "{} not found (apt-get install chromium)",
            chromium().display()
        ));
    }
    if !example_dir().join("node_modules/playwright-core").exists() {
        return Some(
            "examples/storefront has no node_modules (cd examples/storefront && npm ci)".into(),
        );
    }
    None
}

/// `npm run build` (buf generate + esbuild, about a second) once per test process, so the page
/// under test is always the current source; both backends' runs share the result.
fn build_example() {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if *built {
        return;
    }
    let out = std::process::Command::new("npm")
        .args(["run", "--silent", "build"])
        .current_dir(example_dir())
        .output()
        .expect("npm run build");
    assert!(
        out.status.success(),
        "building examples/storefront failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    *built = true;
}

/// The browser test's tools, or `None` after printing `SKIPPED: …` (never in CI).
fn ready() -> bool {
    if let Some(why) = missing_tool() {
        assert!(
            std::env::var("CI").is_err(),
            "{why}, and CI must run the browser test"
        );
        println!("SKIPPED: browser test: {why}");
        return false;
    }
    build_example();
    true
}

/// The built page (dist/), served over HTTP/1.1 on 127.0.0.1:0: its origin is
/// `http://127.0.0.1:PORT`. The task ends with the test's runtime.
async fn serve_page() -> SocketAddr {
    let dist = example_dir().join("dist");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let dist = dist.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let reply = static_file(&dist, req.uri().path());
                async move { Ok::<_, Infallible>(reply) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

fn static_file(dist: &Path, path: &str) -> Response<Full<Bytes>> {
    let (name, content_type) = match path {
        "/" | "/index.html" => ("index.html", "text/html; charset=utf-8"),
        "/main.js" => ("main.js", "text/javascript; charset=utf-8"),
        _ => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let body = std::fs::read(dist.join(name)).expect("built page");
    Response::builder()
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

/// A store whose only return origin is `origin`, with one paid product sold in test.
async fn store_for(app: &TestApp, origin: &str) -> (Shop, String) {
    let shop = shop(app).await;
    let update = pb::UpdateStoreRequest {
        store: Some(pb::Store {
            id: shop.store_id.clone(),
            allowed_return_origins: vec![origin.into()],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["allowed_return_origins".into()],
        }),
    };
    app.admin()
        .update_store(app.platform(update))
        .await
        .expect("origins");
    let widget = product(app, &shop.store_id, "Widget", false).await;
    let test = [pb::Environment::Test];
    release(
        app,
        &widget,
        &[("USD", 1999)],
        pb::BillingPeriod::OneTime,
        0,
        &test,
    )
    .await;
    (shop, widget)
}

/// The page in Chromium: its state lines as they change (drive.mjs prints them). `on_state`
/// sees each line, and may act on the service while the page keeps running.
async fn drive<F, Fut>(url: &str, mut on_state: F) -> Vec<Value>
where
    F: FnMut(Value) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut child = tokio::process::Command::new("node")
        .arg("e2e/drive.mjs")
        .arg(url)
        .args(std::env::var("STOREFRONT_SCREENSHOT").ok())
        .current_dir(example_dir())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node e2e/drive.mjs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Generous: Chromium starts slowly on a loaded machine; drive.mjs gives up after 90 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    while let Some(line) = tokio::time::timeout_at(deadline, lines.next_line())
        .await
        .expect("the browser finishes in time")
        .unwrap()
    {
        let state: Value = serde_json::from_str(&line).expect("a JSON line");
        on_state(state.clone()).await;
        seen.push(state);
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "drive.mjs failed ({status}): {seen:#?}");
    seen
}

fn page_url(page: SocketAddr, app: &TestApp, slug: &str, product: &str) -> String {
    format!(
        "http://{page}/index.html?server=http://{}&store={slug}&product={product}",
        app.addr
    )
}

/// From the allowed origin: the page creates a session, shows its checkout URL and OPEN; the
/// test completes it through HostedCheckoutService; WatchSession brings COMPLETED to the page.
/// From another origin (another port): the browser withholds the reply, #error says CORS.
pub async fn storefront_page_in_chromium(ctx: Ctx) {
    if !ready() {
        return;
    }
    let opts = Options {
        cors_origins: vec![OPERATOR_ORIGIN.into()],
        ..Default::default()
    };
    let app = TestApp::spawn_with(&ctx, opts).await;
    let (allowed, disallowed) = (serve_page().await, serve_page().await);
    let (shop, widget) = store_for(&app, &format!("http://{allowed}")).await;

    let mut completed = None;
    let url = page_url(allowed, &app, &shop.slug, &widget);
    let seen = drive(&url, |state| {
        // The first time the page shows OPEN, the payment succeeds (as the hosted page would).
        let open = state["status"] == "OPEN" && completed.is_none();
        let id = open.then(|| state["session"].as_str().unwrap().to_owned());
        completed = completed.take().or(id.clone());
        let app = &app;
        async move {
            if let Some(id) = id {
                complete(app, &id, "pay_browser_1").await.expect("complete");
            }
        }
    })
    .await;
    let last = seen.iter().rev().find(|s| s.get("status").is_some());
    let last = last.expect("page states");
    assert_eq!(last["error"], "", "{seen:#?}");
    assert_eq!(last["status"], "COMPLETED", "{seen:#?}");
    assert!(completed.is_some(), "the page showed OPEN first: {seen:#?}");
    let url_shown = last["checkoutUrl"].as_str().unwrap_or_default();
    assert!(
        url_shown.contains(last["session"].as_str().unwrap()),
        "{seen:#?}"
    );

    let url = page_url(disallowed, &app, &shop.slug, &widget);
    let seen = drive(&url, |_| async {}).await;
    let last = seen.iter().rev().find(|s| s.get("status").is_some());
    let error = last.expect("page states")["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("CORS"), "{seen:#?}");
    // The browser's own word: the reply was blocked by CORS, not lost to the network.
    let blocked = seen.iter().any(|s| {
        s["console"]
            .as_str()
            .is_some_and(|c| c.contains("blocked by CORS policy"))
    });
    assert!(blocked, "{seen:#?}");
}
