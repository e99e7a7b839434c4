//! Authentication, as one tower layer in front of every service. It runs before any
//! handler, so a handler cannot forget it; it hands the authenticated caller to the
//! handler as a typed value in the request extensions.
//!
//! * `checkout.v1.CheckoutService`: `x-context-environment` (`test`|`prod`), then a secret
//!   API key (`authorization: Bearer sk_…`) or a store slug (`x-store-slug`, publishable,
//!   reduced rights, only for the methods in `SLUG_METHODS`).
//! * `checkout.v1.HostedCheckoutService`, `checkout.v1.AdminService`: the platform token.
//! * Everything else (health, reflection) is public.
use super::auth_cache::AuthCache;
use crate::{
    db::{self, stores::StoreRow, Db},
    domain::{
        ids::{ApiKeyId, StoreId},
        store::{hash_secret, secrets_match, ApiKeySecret},
        Environment,
    },
    error::{AppError, AppResult},
};
use futures_util::future::BoxFuture;
use http::HeaderMap;
use std::{
    sync::Arc,
    task::{Context, Poll},
};

/// A merchant authenticated on CheckoutService: one store, one environment.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub store_id: StoreId,
    pub store_name: String,
    pub environment: Environment,
    pub credential: Credential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Full rights.
    ApiKey(ApiKeyId),
    /// Publishable storefront auth: sensitive fields ignored, reduced views.
    StoreSlug,
}

/// The platform itself (hosted payment page, payment processor, operators).
#[derive(Debug, Clone, Copy)]
pub struct Platform;

pub const ENVIRONMENT_HEADER: &str = "x-context-environment";
pub const STORE_SLUG_HEADER: &str = "x-store-slug";

const CHECKOUT_SERVICE: &str = "/checkout.v1.CheckoutService/";
const PLATFORM_SERVICES: [&str; 2] = [
    "/checkout.v1.HostedCheckoutService/",
    "/checkout.v1.AdminService/",
];
/// The CheckoutService methods a publishable store slug may call.
const SLUG_METHODS: [&str; 3] = ["CreateSession", "GetSession", "WatchSession"];

struct Authenticator {
    db: Db,
    platform_token: String,
    limiter: super::rate_limit::RateLimiter,
    cache: Arc<AuthCache>,
    failures: super::auth_failures::AuthFailureLimiter,
}

enum Caller {
    Merchant(Merchant),
    Platform,
    Public,
}

impl Authenticator {
    async fn authenticate(&self, path: &str, headers: &HeaderMap) -> AppResult<Caller> {
        // A page's script can be read by anyone who loads it: a bearer secret sent from a
        // browser (it always sends Origin) is already leaked, and is refused (SPEC §12).
        if headers.contains_key(http::header::ORIGIN) && bearer(headers).is_some() {
            return Err(AppError::PermissionDenied(
                "Secret API keys must not be used from a browser".into(),
            ));
        }
        if let Some(method) = path.strip_prefix(CHECKOUT_SERVICE) {
            return self.merchant(method, headers).await.map(Caller::Merchant);
        }
        if PLATFORM_SERVICES.iter().any(|p| path.starts_with(p)) {
            let token = bearer(headers).ok_or(AppError::Unauthenticated)?;
            return if secrets_match(token, &self.platform_token) {
                Ok(Caller::Platform)
            } else {
                Err(AppError::Unauthenticated)
            };
        }
        Ok(Caller::Public)
    }

    async fn merchant(&self, method: &str, headers: &HeaderMap) -> AppResult<Merchant> {
        let environment: Environment = headers
            .get(ENVIRONMENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                AppError::Invalid(crate::domain::Invalid::field(
                    ENVIRONMENT_HEADER,
                    "Missing or invalid header: x-context-environment",
                ))
            })?;
        let (store, credential) = if headers.contains_key(http::header::AUTHORIZATION) {
            self.api_key(headers, environment).await?
        } else if let Some(slug) = headers.get(STORE_SLUG_HEADER) {
            if !SLUG_METHODS.contains(&method) {
                return Err(AppError::PermissionDenied(format!(
                    "{method} requires a secret API key (authorization: Bearer sk_…); a store slug is not enough"
                )));
            }
            let slug = slug.to_str().map_err(|_| store_not_found())?;
            (self.store_by_slug(slug).await?, Credential::StoreSlug)
        } else {
            return Err(AppError::Unauthenticated);
        };
        if !store.active {
            return Err(AppError::PermissionDenied("Store is not active".into()));
        }
        if environment == Environment::Prod && !store.approved_for_prod {
            return Err(AppError::PermissionDenied(
                "Store is not approved for production payments".into(),
            ));
        }
        // Rate limits apply to authenticated merchants only, after the checks above, so a
        // bad key cannot drain a good key's bucket.
        if self.limiter.enabled() {
            let bucket = match &credential {
                Credential::ApiKey(id) => id.to_string(),
                Credential::StoreSlug => format!("slug:{}", store.id),
            };
            if let Err(wait) = self.limiter.take(&bucket) {
                return Err(AppError::RateLimited(wait));
            }
        }
        tracing::Span::current().record("store_id", store.id.as_str());
        Ok(Merchant {
            store_id: StoreId::from_trusted(store.id.clone()),
            store_name: store.name.clone(),
            environment,
            credential,
        })
    }

    async fn api_key(
        &self,
        headers: &HeaderMap,
        header_env: Environment,
    ) -> AppResult<(Arc<StoreRow>, Credential)> {
        let token = bearer(headers).ok_or(AppError::Unauthenticated)?;
        // Malformed keys are refused before touching the database.
        ApiKeySecret::environment_of(token).ok_or(AppError::Unauthenticated)?;
        let hash = hash_secret(token);
        let (key, store) = match self.cache.key(&hash) {
            Some(hit) => hit,
            None => {
                let since = self.cache.generation();
                let (key, store) = db::api_keys::find_by_hash(&self.db, &hash)
                    .await?
                    .ok_or(AppError::Unauthenticated)?;
                let (key, store) = (Arc::new(key), Arc::new(store));
                self.cache.put_key(since, &key, &store);
                (key, store)
            }
        };
        // The lookup matched on the hash already; compare again in constant time so that
        // correctness never rests on how the database compares strings.
        if !secrets_match(&key.secret_hash, &hash) || key.revoked_at.is_some() {
            return Err(AppError::Unauthenticated);
        }
        let key_env = key.environment()?;
        if key_env != header_env {
            return Err(AppError::PermissionDenied(format!(
                "This API key belongs to the {key_env} environment, but {ENVIRONMENT_HEADER} is {header_env}"
            )));
        }
        Ok((
            store,
            Credential::ApiKey(ApiKeyId::from_trusted(key.id.clone())),
        ))
    }
}

impl Authenticator {
    async fn store_by_slug(&self, slug: &str) -> AppResult<Arc<StoreRow>> {
        if let Some(store) = self.cache.slug(slug) {
            return Ok(store);
        }
        let since = self.cache.generation();
        let store = Arc::new(
            db::stores::find_by_slug(&self.db, slug)
                .await?
                .ok_or_else(store_not_found)?,
        );
        self.cache.put_slug(since, slug, &store);
        Ok(store)
    }
}

impl Authenticator {
    /// A failed authentication counts against the peer's address; past its limit the
    /// failure is answered with RESOURCE_EXHAUSTED instead (see `auth_failures`).
    fn refusal<B>(&self, e: AppError, req: &http::Request<B>) -> AppError {
        use tonic::transport::server::TcpConnectInfo;
        if !matches!(e, AppError::Unauthenticated) {
            return e;
        }
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(|c| c.remote_addr());
        match peer.map(|p| self.failures.charge(p.ip())) {
            Some(Err(wait)) => AppError::AuthFailuresLimited(wait),
            _ => e,
        }
    }
}

fn store_not_found() -> AppError {
    AppError::NotFound("Store not found".into())
}

/// The token of `authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The tower layer wrapping the whole router.
#[derive(Clone)]
pub struct AuthLayer(Arc<Authenticator>);

impl AuthLayer {
    pub fn new(
        db: Db,
        platform_token: String,
        limiter: super::rate_limit::RateLimiter,
        cache: Arc<AuthCache>,
        failures: super::auth_failures::AuthFailureLimiter,
    ) -> Self {
        AuthLayer(Arc::new(Authenticator {
            db,
            platform_token,
            limiter,
            cache,
            failures,
        }))
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must serve this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.authenticate(req.uri().path(), req.headers()).await {
                Ok(Caller::Merchant(m)) => {
                    req.extensions_mut().insert(m);
                }
                Ok(Caller::Platform) => {
                    req.extensions_mut().insert(Platform);
                }
                Ok(Caller::Public) => {}
                Err(e) => return Ok(tonic::Status::from(auth.refusal(e, &req)).into_http()),
            }
            inner.call(req).await
        })
    }
}

/// The merchant the auth layer put on this request.
pub fn merchant<T>(req: &tonic::Request<T>) -> AppResult<&Merchant> {
    req.extensions()
        .get::<Merchant>()
        .ok_or_else(|| AppError::internal("CheckoutService request without a Merchant"))
}

/// Proof that the auth layer accepted the platform token for this request.
pub fn platform<T>(req: &tonic::Request<T>) -> AppResult<Platform> {
    req.extensions()
        .get::<Platform>()
        .copied()
        .ok_or_else(|| AppError::internal("platform request without the Platform credential"))
}
