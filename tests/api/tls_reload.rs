//! Certificates replaced while the service runs: picked up from the files (polled) or on
//! SIGHUP (the real binary, as an operator would signal it); a bad replacement is logged
//! and the previous certificate stays in use.
use crate::{
    helpers::{Ctx, TestDb},
    tls::{health_over_tls, spawn_tls, tls_channel, Ca, Files},
};
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// Generous: the machine running the suite may be busy.
const RELOAD_DEADLINE: Duration = Duration::from_secs(30);

/// Polls until a new connection verifies with `ca`.
async fn until_served_with(addr: SocketAddr, ca: &str) {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    loop {
        match health_over_tls(addr, ca, None).await {
            Ok(status) => {
                assert_eq!(status, ServingStatus::Serving);
                return;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "not served with the new CA within {RELOAD_DEADLINE:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// New cert and key files (of another CA) are used for new connections within a few
/// polls; connections made before keep working.
pub async fn changed_files_are_picked_up(ctx: Ctx) {
    let (first, second) = (Ca::new("first CA"), Ca::new("second CA"));
    let files = Files::new(&first.server());
    let app = spawn_tls(&ctx, files.config(None, 1), 5_000).await;
    let before = tls_channel(app.addr, &first.pem, None).await.unwrap();
    let mut before = HealthClient::new(before);
    before.check(HealthCheckRequest::default()).await.unwrap();

    files.install(&second.server());
    until_served_with(app.addr, &second.pem).await;
    let old = health_over_tls(app.addr, &first.pem, None).await;
    assert!(old.is_err(), "the old certificate is gone: {old:?}");
    let r = before.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(r.into_inner().status(), ServingStatus::Serving);
}

/// The binary with TLS, file polling off (so only SIGHUP reloads), logging JSON to a pipe.
struct Service {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn start(db: &TestDb, files: &Files) -> Service {
        use base64::Engine;
        let token = format!("pt_{}", checkout::domain::ids::random_base62(40));
        // Needed by builds that encrypt secrets at rest; ignored by those that do not.
        let secrets_key =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let mut child = Command::new(env!("CARGO_BIN_EXE_checkout"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("CHECKOUT_LISTEN_ADDR", "127.0.0.1:0")
            .env("CHECKOUT_PLATFORM_TOKEN", token)
            .env("CHECKOUT_SECRETS_KEY", secrets_key)
            .env("CHECKOUT_DEMO_SEED", "false")
            .env("CHECKOUT_TLS_CERT", files.path("cert.pem"))
            .env("CHECKOUT_TLS_KEY", files.path("key.pem"))
            .env("CHECKOUT_TLS_POLL_SECONDS", "0")
            .env("CHECKOUT_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the checkout binary");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("banner").expect("stdout");
        std::thread::spawn(move || lines.for_each(drop));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let addr = first.rsplit(' ').next().unwrap().parse().expect("address");
        Service { child, addr, log }
    }

    fn sighup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    }

    /// Waits for the next log line (after the first `skip`) containing every one of `parts`.
    async fn log_line(&self, skip: usize, parts: &[&str]) -> String {
        let deadline = Instant::now() + RELOAD_DEADLINE;
        loop {
            let found = self.log.lock().unwrap()[skip..]
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} in {:#?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGHUP reloads; a garbled key or a key of another certificate is refused with an ERROR
/// naming the file (without its content) and the old certificate keeps serving.
pub async fn sighup_reloads_and_bad_files_keep_the_old_certificate(ctx: Ctx) {
    let db = TestDb::create(&ctx).await;
    let (first, second) = (Ca::new("first CA"), Ca::new("second CA"));
    let old = first.server();
    let files = Files::new(&old);
    let svc = Service::start(&db, &files);
    svc.log_line(0, &["TLS on the gRPC listener", "not_after"])
        .await;
    assert_eq!(
        health_over_tls(svc.addr, &first.pem, None).await,
        Ok(ServingStatus::Serving)
    );
    let key_path = files.path("key.pem").display().to_string();

    let garbled =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBtYXRlcmlhbA==!!\n-----END PRIVATE KEY-----\n";
    files.write("key.pem", garbled);
    let skip = svc.log_len();
    svc.sighup();
    let line = svc
        .log_line(skip, &["TLS reload failed", "ERROR", &key_path])
        .await;
    assert!(!line.contains("c2VjcmV0"), "no key material: {line}");
    assert_eq!(
        health_over_tls(svc.addr, &first.pem, None).await,
        Ok(ServingStatus::Serving)
    );

    // A valid key, but not the certificate's.
    let new = second.server();
    files.write("key.pem", &new.key);
    let skip = svc.log_len();
    svc.sighup();
    svc.log_line(skip, &["TLS reload failed", &key_path]).await;
    assert_eq!(
        health_over_tls(svc.addr, &first.pem, None).await,
        Ok(ServingStatus::Serving)
    );

    files.write("cert.pem", &new.cert);
    let skip = svc.log_len();
    svc.sighup();
    svc.log_line(skip, &["TLS certificate reloaded", "SIGHUP", "not_after"])
        .await;
    assert_eq!(
        health_over_tls(svc.addr, &second.pem, None).await,
        Ok(ServingStatus::Serving)
    );
    let r = health_over_tls(svc.addr, &first.pem, None).await;
    assert!(r.is_err(), "the old certificate is gone: {r:?}");
}
