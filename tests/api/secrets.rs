//! Secrets at rest (SPEC §10, issue 10 item 5): webhook signing secrets are sealed with the
//! operator's key and client tokens stored as hashes — in new rows, and in rows an older
//! version wrote in plaintext, which a start seals. Keys: a key file on SQLite, required on
//! Postgres, a wrong key refused at start, rotation through CHECKOUT_SECRETS_OLD_KEYS.
use crate::{
    fixtures::{catalog, line, order, Catalog},
    helpers::{new_secrets_key, serve_config, with_md, Ctx, Options, SecretsKey, TestApp, TestDb},
    lifecycle::complete,
    receiver::Receiver,
    storage::{contains, dump},
    webhooks::{endpoint, local, verify},
};
use checkout::{db::Backend, domain::store::hash_secret, pb, startup::Application};
use std::{os::unix::fs::PermissionsExt, time::Duration};

/// CreateSession with an idempotency key; the whole reply.
async fn create_keyed(app: &TestApp, c: &Catalog, idem: &str) -> pb::CreateSessionResponse {
    let req = with_md(
        order(vec![line(&c.widget, 1)], "USD"),
        &[
            ("authorization", &format!("Bearer {}", c.shop.test_key)),
            ("x-context-environment", "test"),
            ("idempotency-key", idem),
        ],
    );
    app.checkout()
        .create_session(req)
        .await
        .expect("create session")
        .into_inner()
}

fn session_id(r: &pb::CreateSessionResponse) -> String {
    r.session.as_ref().expect("session").id.clone()
}

/// Why a server refused to start; it must not have started.
async fn refused(db: &TestDb, opts: &Options) -> String {
    match Application::build(serve_config(db, opts)).await {
        Ok(_) => panic!("the server started"),
        Err(e) => format!("{e:#}"),
    }
}

pub(crate) fn key_id(key: &str) -> String {
    checkout::secrets::Key::parse(key, "key")
        .unwrap()
        .id()
        .to_owned()
}

pub async fn no_plaintext_webhook_secret_or_client_token_in_storage(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    assert!(hook.secret.starts_with("whsec_"), "shown once at creation");
    let first = create_keyed(&app, &c, "order-1").await;
    let again = create_keyed(&app, &c, "order-1").await;
    assert_eq!(session_id(&again), session_id(&first));
    assert_eq!(
        again.client_token, first.client_token,
        "a replay: the same token"
    );
    let other = create_keyed(&app, &c, "order-2").await;
    assert!(first.client_token.starts_with("ct_") && first.client_token.len() == 46);
    assert_ne!(other.client_token, first.client_token);
    complete(&app, &session_id(&first), "pay").await.unwrap();
    let got = receiver.wait_for(1).await;
    verify(&got[0], &hook.secret);

    let bytes = dump(&app.db);
    assert!(
        contains(&bytes, &session_id(&first)),
        "sanity: the dump holds the data"
    );
    assert!(contains(
        &bytes,
        &format!("sealed:v1:{}:", key_id(&app.db.secrets_key))
    ));
    assert!(
        contains(&bytes, &hash_secret(&first.client_token)),
        "the token's hash is stored"
    );
    let secret_part = hook.secret.trim_start_matches("whsec_");
    for (what, value) in [
        ("webhook secret", secret_part),
        ("client token", first.client_token.trim_start_matches("ct_")),
        ("client token", other.client_token.trim_start_matches("ct_")),
    ] {
        assert!(!contains(&bytes, value), "a {what} is stored in plaintext");
    }
}

pub async fn plaintext_rows_of_an_older_version_are_sealed_at_start(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let open = create_keyed(&app, &c, "legacy-1").await;
    // What an older version stored: the secret and a client token as they are.
    let legacy_secret = checkout::domain::webhook::generate_secret();
    let legacy_token = format!("ct_{}", checkout::domain::ids::random_base62(43));
    app.sql(&format!(
        "UPDATE webhook_endpoints SET secret = '{legacy_secret}' WHERE id = '{}'",
        hook.id
    ))
    .await;
    app.sql(&format!(
        "UPDATE sessions SET client_token = '{legacy_token}' WHERE id = '{}'",
        session_id(&open)
    ))
    .await;
    let opts = Options {
        platform_token: app.platform_token.clone(),
        ..local()
    };
    let db = app.db.clone();
    app.stop(Duration::from_secs(5)).await;
    assert!(
        contains(&dump(&db), &legacy_token),
        "sanity: the legacy row is there"
    );

    // Two replicas start at once: each row is sealed once, and both serve.
    let (a, b) = tokio::join!(
        TestApp::spawn_on(db.clone(), opts.clone()),
        TestApp::spawn_on(db.clone(), opts.clone())
    );
    let bytes = dump(&db);
    assert!(!contains(
        &bytes,
        legacy_secret.trim_start_matches("whsec_")
    ));
    assert!(!contains(&bytes, legacy_token.trim_start_matches("ct_")));
    assert!(contains(&bytes, &hash_secret(&legacy_token)));
    assert!(contains(
        &bytes,
        &format!("sealed:v1:{}:", key_id(&db.secrets_key))
    ));
    // Deliveries are still signed with the secret the receiver was given.
    complete(&a, &session_id(&open), "pay").await.unwrap();
    let got = receiver.wait_for(1).await;
    verify(&got[0], &legacy_secret);
    b.stop(Duration::from_secs(5)).await;
    a.stop(Duration::from_secs(5)).await;
}

pub async fn wrong_key_refused_and_rotation_reseals(ctx: Ctx) {
    let app = TestApp::spawn_with(&ctx, local()).await;
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let first = create_keyed(&app, &c, "rotate-1").await;
    let (db, token) = (app.db.clone(), app.platform_token.clone());
    let opts = |key| Options {
        platform_token: token.clone(),
        secrets_key: key,
        ..local()
    };
    let (old, new) = (db.secrets_key.clone(), new_secrets_key());
    let (with_new, rotating, rotated) = (
        opts(SecretsKey::Given(new.clone(), None)),
        opts(SecretsKey::Given(new.clone(), Some(format!("{old},")))),
        opts(SecretsKey::Given(new.clone(), None)),
    );
    app.stop(Duration::from_secs(5)).await;

    let why = refused(&db, &with_new).await;
    assert!(
        why.contains(&format!("webhook endpoint {}", hook.id)),
        "{why}"
    );
    assert!(
        why.contains(&format!("sealed under key id {}", key_id(&old))),
        "{why}"
    );
    assert!(why.contains("neither CHECKOUT_SECRETS_KEY nor one of CHECKOUT_SECRETS_OLD_KEYS"));
    for secret in [&old, &new, &hook.secret] {
        assert!(!why.contains(secret.as_str()), "no secret in the error");
    }
    let malformed = opts(SecretsKey::Given("c2hvcnQ=".into(), None));
    let why = refused(&db, &malformed).await;
    assert!(why.contains("CHECKOUT_SECRETS_KEY must be 32 bytes") && !why.contains("c2hvcnQ="));

    // The new key current, the old one still accepted: rows are re-sealed under the new.
    let app = TestApp::spawn_on(db.clone(), rotating).await;
    let bytes = dump(&db);
    assert!(contains(&bytes, &format!("sealed:v1:{}:", key_id(&new))));
    assert!(!contains(&bytes, &format!("sealed:v1:{}:", key_id(&old))));
    let again = create_keyed(&app, &c, "rotate-1").await;
    assert_eq!(
        again.client_token, first.client_token,
        "a replay: the same token"
    );
    complete(&app, &session_id(&first), "pay").await.unwrap();
    verify(&receiver.wait_for(1).await[0], &hook.secret);
    app.stop(Duration::from_secs(5)).await;

    // The old key dropped: everything opens with the new one alone.
    let app = TestApp::spawn_on(db.clone(), rotated).await;
    let later = create_keyed(&app, &c, "rotate-2").await;
    complete(&app, &session_id(&later), "pay").await.unwrap();
    verify(&receiver.wait_for(2).await[1], &hook.secret);
}

/// SQLite without a key: a key file beside the database, 0600, reused on restart, refused
/// when others may read it. Postgres without a key: refused, since replicas must share one.
pub async fn key_file_on_sqlite_key_required_on_postgres(ctx: Ctx) {
    let db = TestDb::create(&ctx).await;
    let opts = Options {
        secrets_key: SecretsKey::Unset,
        ..local()
    };
    if db.backend == Backend::Postgres {
        let why = refused(&db, &opts).await;
        assert!(
            why.contains("CHECKOUT_SECRETS_KEY must be set when DATABASE_URL is PostgreSQL"),
            "{why}"
        );
        return;
    }
    let app = TestApp::spawn_on(db.clone(), opts.clone()).await;
    let path = format!("{}.key", db.url.strip_prefix("sqlite://").unwrap());
    let mode = |p: &str| std::fs::metadata(p).expect("key file").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key_id(&key).len(), 8, "a 32-byte key");
    let c = catalog(&app).await;
    let receiver = Receiver::start().await;
    let hook = endpoint(&app, &c, &receiver.url(), pb::Environment::Test).await;
    let first = create_keyed(&app, &c, "file-1").await;
    app.stop(Duration::from_secs(5)).await;

    let app = TestApp::spawn_on(db.clone(), opts.clone()).await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        key,
        "reused, not replaced"
    );
    assert!(contains(
        &dump(&db),
        &format!("sealed:v1:{}:", key_id(&key))
    ));
    let again = create_keyed(&app, &c, "file-1").await;
    assert_eq!(again.client_token, first.client_token);
    complete(&app, &session_id(&first), "pay").await.unwrap();
    verify(&receiver.wait_for(1).await[0], &hook.secret);
    app.stop(Duration::from_secs(5)).await;

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let why = refused(&db, &opts).await;
    assert!(
        why.contains("mode 644") && why.contains("chmod 600"),
        "{why}"
    );
    assert!(!why.contains(key.trim()), "no key in the error");
}
