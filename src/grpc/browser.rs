//! Browsers (SPEC §12): CORS around gRPC-Web. The outermost layer, because a preflight is
//! plain HTTP that neither gRPC-Web translation nor gRPC would accept.
//!
//! * A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here for any
//!   origin: the request headers a storefront sends and the gRPC headers it must read.
//! * Any other request passes through; its response carries `Access-Control-Allow-Origin`
//!   (the request's own origin, never `*`, never credentials) only when that origin is in
//!   `CHECKOUT_CORS_ORIGINS` or in the allow-list of the store named by `x-store-slug`.
//!   Elsewhere the browser keeps the response from the page.
//!
//! Secret keys from a browser are refused by the auth layer, which sees every credential.
use crate::db::{self, Db};
use futures_util::future::BoxFuture;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

const ALLOW_HEADERS: &str =
    "content-type, x-grpc-web, x-user-agent, x-store-slug, x-context-environment, idempotency-key, grpc-timeout";
const EXPOSE_HEADERS: &str = "grpc-status, grpc-message, grpc-status-details-bin";
/// How long a store's origins are reused, like credentials in the auth cache.
const ORIGINS_TTL: Duration = Duration::from_secs(5);
/// Slugs remembered at most (each a short list); past it the cache starts over.
const ORIGINS_CACHE_MAX: usize = 10_000;

/// A store's origins as read at an instant.
type CachedOrigins = (Instant, Arc<[String]>);

pub struct Browsers {
    db: Db,
    /// `CHECKOUT_CORS_ORIGINS`: allowed for every store.
    operator_origins: HashSet<String>,
    by_slug: Mutex<HashMap<String, CachedOrigins>>,
}

impl Browsers {
    pub fn new(db: Db, operator_origins: &[String]) -> Arc<Browsers> {
        Arc::new(Browsers {
            db,
            operator_origins: operator_origins.iter().map(|o| normalized(o)).collect(),
            by_slug: Mutex::default(),
        })
    }

    /// Whether a page from `origin` may read the response to this request.
    async fn allows(&self, origin: &str, slug: Option<&str>) -> bool {
        let origin = normalized(origin);
        if self.operator_origins.contains(&origin) {
            return true;
        }
        let Some(slug) = slug else { return false };
        match self.store_origins(slug).await {
            Some(origins) => origins.contains(&origin),
            None => false,
        }
    }

    async fn store_origins(&self, slug: &str) -> Option<Arc<[String]>> {
        if let Some((at, origins)) = self.by_slug.lock().unwrap().get(slug) {
            if at.elapsed() < ORIGINS_TTL {
                return Some(origins.clone());
            }
        }
        // An unreachable database only costs this response its CORS header.
        let origins: Arc<[String]> = db::stores::origins_by_slug(&self.db, slug)
            .await
            .ok()?
            .into();
        let mut cache = self.by_slug.lock().unwrap();
        if cache.len() >= ORIGINS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(slug.to_owned(), (Instant::now(), origins.clone()));
        Some(origins)
    }
}

/// Origins as stores keep them: lowercase, no trailing slash.
fn normalized(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Clone)]
pub struct BrowserLayer(pub Arc<Browsers>);

impl<S> tower::Layer<S> for BrowserLayer {
    type Service = BrowserService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserService {
            inner,
            browsers: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct BrowserService<S> {
    inner: S,
    browsers: Arc<Browsers>,
}

impl<S, B, R> tower::Service<Request<B>> for BrowserService<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Not from a browser: nothing to do, and nothing to pay.
        let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
            return Box::pin(inner.call(req));
        };
        let preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return Box::pin(async move { Ok(preflight_response(origin)) });
        }
        let slug = header_str(req.headers(), super::auth::STORE_SLUG_HEADER).map(str::to_owned);
        let browsers = self.browsers.clone();
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            let allowed = match origin.to_str() {
                Ok(o) => browsers.allows(o, slug.as_deref()).await,
                Err(_) => false,
            };
            let h = res.headers_mut();
            h.append(header::VARY, HeaderValue::from_static("origin"));
            if allowed {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                h.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(EXPOSE_HEADERS),
                );
            }
            Ok(res)
        })
    }
}

/// The answer to any preflight: which headers a storefront may send and must read. Whether
/// the page may then read a response is decided per response (above).
fn preflight_response<R: Default>(origin: HeaderValue) -> Response<R> {
    let mut res = Response::new(R::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert(header::VARY, HeaderValue::from_static("origin"));
    res
}
