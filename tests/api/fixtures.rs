//! Provisioning through AdminService, as an operator would.
use crate::helpers::TestApp;
use checkout::pb;

/// A store with a test key and a prod key, active and approved, with one return origin.
pub struct Shop {
    pub store_id: String,
    pub slug: String,
    pub test_key: String,
    pub test_key_id: String,
    pub prod_key: String,
}

pub fn unique_slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        checkout::domain::ids::random_base62(8).to_lowercase()
    )
}

pub async fn create_store(app: &TestApp, active: bool, approved_for_prod: bool) -> pb::Store {
    let req = pb::CreateStoreRequest {
        slug: unique_slug("shop"),
        name: "Test Shop".into(),
        active,
        approved_for_prod,
        allowed_return_origins: vec!["https://shop.example.com".into()],
    };
    app.admin()
        .create_store(app.platform(req))
        .await
        .expect("create store")
        .into_inner()
}

pub async fn create_key(
    app: &TestApp,
    store_id: &str,
    env: pb::Environment,
) -> pb::CreateApiKeyResponse {
    let req = pb::CreateApiKeyRequest {
        store_id: store_id.into(),
        environment: env as i32,
    };
    app.admin()
        .create_api_key(app.platform(req))
        .await
        .expect("create key")
        .into_inner()
}

pub async fn shop_with(app: &TestApp, active: bool, approved_for_prod: bool) -> Shop {
    let store = create_store(app, active, approved_for_prod).await;
    let test = create_key(app, &store.id, pb::Environment::Test).await;
    let prod = create_key(app, &store.id, pb::Environment::Prod).await;
    Shop {
        store_id: store.id,
        slug: store.slug,
        test_key: test.secret,
        test_key_id: test.api_key_id,
        prod_key: prod.secret,
    }
}

pub async fn shop(app: &TestApp) -> Shop {
    shop_with(app, true, true).await
}

/// A GetSession for a session that does not exist: it reaches the handler only when
/// authentication passed, and then answers NOT_FOUND.
pub fn probe() -> pb::GetSessionRequest {
    pb::GetSessionRequest {
        session_id: checkout::domain::ids::SessionId::generate().to_string(),
    }
}
