//! `checkout events tail`: a store's feed as JSON lines, the same events ListEvents gives.
use crate::{
    events::list_all,
    fixtures::{catalog, created, line, order},
    helpers::{Ctx, TestApp},
    lifecycle::cancel,
};
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

fn tail(app: &TestApp, store_id: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_checkout"));
    cmd.args([
        "events",
        "tail",
        "--store-id",
        store_id,
        "--environment",
        "test",
    ])
    .args(extra)
    .env("DATABASE_URL", &app.db.url);
    cmd
}

fn cursors_of(lines: &str) -> Vec<String> {
    lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["cursor"].as_str().expect("cursor").to_owned()
        })
        .collect()
}

pub async fn tail_prints_json_lines(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let c = catalog(&app).await;
    let store = c.shop.store_id.clone();
    for _ in 0..3 {
        let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
        cancel(&app, &s.id).await.unwrap();
    }
    let truth: Vec<String> = list_all(&app, &c.shop.test_key, "")
        .await
        .into_iter()
        .map(|e| e.cursor)
        .collect();
    assert_eq!(truth.len(), 6);
    let out = tail(&app, &store, &[]).output().expect("run checkout");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(cursors_of(&stdout), truth);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "EVENT_TYPE_SESSION_CREATED");
    assert_eq!(first["session"]["id"], first["sessionId"]);

    let out = tail(&app, &store, &["--after", &truth[3]])
        .output()
        .unwrap();
    assert_eq!(
        cursors_of(&String::from_utf8(out.stdout).unwrap()),
        truth[4..]
    );
    let out = tail(&app, &store, &["--after", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid cursor"));

    // --follow prints what commits after it started.
    let mut child = tail(&app, &store, &["--after", &truth[5], "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tail --follow");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    let s = created(&app, &c, order(vec![line(&c.widget, 1)], "USD")).await;
    let got = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("a line within 15 s");
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v["sessionId"], s.id.as_str());
    child.kill().unwrap();
    child.wait().unwrap();
}
