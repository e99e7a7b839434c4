//! Building and running the server. `Application::build` does everything that can fail
//! (config checks, migrations, binding the port) before anything is served, and exposes
//! the bound address, so tests can start it on `127.0.0.1:0`.
use crate::grpc::header_limit::{HeaderLimitLayer, HTTP2_MAX_HEADER_LIST_BYTES};
use crate::{
    config::ServeConfig,
    db::{connect::backend_of, Backend, Db},
    dispatch::Dispatcher,
    domain::ids::random_base62,
    events::Hub,
    grpc::{
        admin::Admin,
        auth::AuthLayer,
        auth_cache::AuthCache,
        browser::{BrowserLayer, Browsers},
        checkout::Checkout,
        hosted::Hosted,
        rate_limit::RateLimiter,
        rpc_layer::RpcLayer,
        session_pb::SessionView,
    },
    listener::{self, ConnLimits},
    metrics::Metrics,
    pb::{
        admin_service_server::AdminServiceServer, checkout_service_server::CheckoutServiceServer,
        hosted_checkout_service_server::HostedCheckoutServiceServer,
    },
    seed::{self, DemoSeed},
    tls::{TlsFiles, TlsState},
    workers::{spawn_feed_announcer, spawn_pg_listener, spawn_sweeper},
};
use crate::{
    grpc::auth_failures::AuthFailureLimiter,
    health::{gate::DbGateLayer, probe::spawn_probe, Health},
};
use anyhow::{bail, Context};
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_listener: Option<TcpListener>,
    metrics: Arc<Metrics>,
    db: Db,
    config: ServeConfig,
    platform_token: String,
    generated_token: bool,
    seeded: Option<DemoSeed>,
    keys: Arc<crate::secrets::Keyring>,
    tls: Option<(TlsFiles, TlsState)>,
}

/// The checkout services, for health status and shutdown.
const SERVICES: [&str; 3] = [
    "checkout.v1.CheckoutService",
    "checkout.v1.HostedCheckoutService",
    "checkout.v1.AdminService",
];

impl Application {
    pub async fn build(config: ServeConfig) -> anyhow::Result<Application> {
        let url = &config.db.database_url;
        let backend = backend_of(url)?;
        let (platform_token, generated_token) = match &config.platform_token {
            Some(t) if t.len() >= 32 => (t.clone(), false),
            Some(_) => bail!("CHECKOUT_PLATFORM_TOKEN must be at least 32 characters"),
            // Replicas sharing Postgres must share one token, so none can be made up here.
            None if backend == Backend::Postgres => {
                bail!("CHECKOUT_PLATFORM_TOKEN must be set when DATABASE_URL is PostgreSQL")
            }
            None => (format!("pt_{}", random_base62(43)), true),
        };
        let keys = Arc::new(crate::secrets::load(&config.secrets, url)?);
        let tls = load_tls(&config)?;
        Db::migrate(url).await?;
        let db = Db::connect(url, &config.db.pool_options()).await?;
        let resealed = crate::db::secrets::reseal(&db, &keys).await?;
        tracing::info!(key_id = keys.current_id(), ?resealed, "secrets key loaded");
        let seeded = if config.demo_seed.unwrap_or(backend == Backend::Sqlite) {
            seed::seed_if_empty(&db).await?
        } else {
            None
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding {}", config.listen_addr))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match config.log.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding metrics on {addr}"))?,
            ),
            None => None,
        };
        Ok(Application {
            listener,
            local_addr,
            metrics_listener,
            metrics: Arc::new(Metrics::default()),
            db,
            config,
            platform_token,
            generated_token,
            seeded,
            keys,
            tls,
        })
    }

    /// Whether the gRPC listener speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where Prometheus metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The platform token, if it was generated at start (to print once for a developer).
    pub fn generated_platform_token(&self) -> Option<&str> {
        self.generated_token.then_some(self.platform_token.as_str())
    }

    /// What the demo seed created, if it ran on this start.
    pub fn demo_seed(&self) -> Option<&DemoSeed> {
        self.seeded.as_ref()
    }

    /// Serves until `shutdown` resolves, then drains: health turns NOT_SERVING first, the
    /// server keeps serving for the shutdown delay (src/health), then new connections are
    /// refused and in-flight calls get the grace period to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cfg = &self.config;
        let limit = cfg.max_decoding_message_bytes;
        // Migrations ran in build(), so the service is ready the moment it listens.
        let health = Health::new(&SERVICES);
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.BadRequest / ErrorInfo / RetryInfo, so grpcurl and buf curl can
                // decode the details of our errors (`-format-error`).
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let hub = Hub::new(self.db.clone(), self.metrics.clone());
        let auth_cache = Arc::new(AuthCache::default());
        let (stop_workers, stopping) = tokio::sync::watch::channel(false);
        let view = Arc::new(SessionView {
            hosted_url_template: cfg.hosted_url_template.clone(),
        });
        let metrics = self.metrics.clone();
        let mut workers = vec![spawn_sweeper(
            self.db.clone(),
            hub.clone(),
            metrics.clone(),
            Duration::from_secs(cfg.idempotency_retention_hours * 3600),
            Duration::from_secs(cfg.event_retention_days * 86_400),
            stopping.clone(),
        )];
        let probe_every = Duration::from_millis(cfg.health.health_probe_ms);
        let url = &cfg.db.database_url;
        workers.push(spawn_probe(
            url,
            self.db.clone(),
            health.clone(),
            probe_every,
            stopping.clone(),
        )?);
        if let Some(listener) = self.metrics_listener {
            workers.push(crate::metrics::http::serve(
                listener,
                self.db.clone(),
                metrics.clone(),
                cfg.log.metrics_limits.clone(),
                stopping.clone(),
            ));
        }
        if cfg.webhooks.webhook_dispatcher {
            let allow_private = cfg.webhook_allow_private_targets;
            let dispatcher = Dispatcher::new(
                self.db.clone(),
                cfg.webhooks.clone(),
                allow_private,
                metrics.clone(),
                self.keys.clone(),
            )?;
            workers.push(dispatcher.spawn(hub.outbox.clone(), stopping.clone()));
        }
        if let Some((files, state)) = &self.tls {
            let poll = Duration::from_secs(cfg.tls.tls_poll_seconds);
            workers.push(crate::tls::reload::spawn(
                files.clone(),
                state.clone(),
                poll,
                stopping.clone(),
            )?);
        }
        if self.db.backend() == Backend::Postgres {
            workers.push(spawn_pg_listener(
                cfg.db.database_url.clone(),
                hub.clone(),
                auth_cache.clone(),
                stopping.clone(),
            ));
            workers.push(spawn_feed_announcer(
                self.db.clone(),
                &hub.feed,
                stopping.clone(),
            ));
        }
        let checkout = Checkout {
            db: self.db.clone(),
            view: view.clone(),
            hub: hub.clone(),
            metrics: metrics.clone(),
            shutdown: stopping,
            keys: self.keys.clone(),
        };
        let watch_hub = hub.clone();
        let hosted = Hosted {
            db: self.db.clone(),
            view,
            hub,
            metrics: metrics.clone(),
        };
        let admin = Admin {
            db: self.db.clone(),
            keys: self.keys.clone(),
            webhook_allow_private_targets: cfg.webhook_allow_private_targets,
            auth_cache: auth_cache.clone(),
        };
        let router = tonic::transport::Server::builder()
            .max_concurrent_streams(cfg.max_concurrent_streams)
            // Keepalive pings keep idle watch streams alive behind load balancers and let
            // the server notice dead peers.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // Header blocks between the limit of HeaderLimitLayer and this one get a gRPC
            // status; only above this one does h2 answer a bare HTTP 431 (see header_limit).
            .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_BYTES)
            // A unary call may take this long at most; streams are not cut (the limit covers
            // the handler producing the response, not the stream that follows).
            .timeout(Duration::from_millis(cfg.limits.request_timeout_ms))
            // gRPC-Web (HTTP/1.1 from browsers) on the same port.
            .accept_http1(true)
            // Outermost first: CORS (a preflight is plain HTTP), gRPC-Web translated to
            // gRPC, then the RPC span and metrics see everything, including auth.
            .layer(BrowserLayer(Browsers::new(
                self.db.clone(),
                &cfg.cors_origins,
            )))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(RpcLayer(metrics.clone()))
            .layer(HeaderLimitLayer)
            .layer(DbGateLayer(health.clone()))
            .layer(AuthLayer::new(
                self.db.clone(),
                self.platform_token.clone(),
                RateLimiter::new(
                    cfg.limits.rate_limit_per_second,
                    cfg.limits.rate_limit_burst,
                ),
                auth_cache,
                AuthFailureLimiter::new(
                    cfg.limits.auth_failures_per_minute,
                    cfg.limits.auth_failures_burst,
                ),
            ))
            .add_service(health.service())
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(CheckoutServiceServer::new(checkout).max_decoding_message_size(limit))
            .add_service(HostedCheckoutServiceServer::new(hosted).max_decoding_message_size(limit))
            .add_service(AdminServiceServer::new(admin).max_decoding_message_size(limit));

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let delay = cfg.health.shutdown_delay(self.db.backend());
        let signal = async move {
            shutdown.await;
            // NOT_SERVING, still serving for the delay, then Health/Watch streams end.
            health.shut_down(delay).await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
            // Watch streams end (UNAVAILABLE, so clients reconnect elsewhere) and workers
            // stop; the server then finishes once in-flight calls are done.
            watch_hub.close();
            let _ = stop_workers.send(true);
            let _ = stopping_tx.send(());
        };
        let tls = self.tls.map(|(_, state)| state);
        tracing::info!(addr = %self.local_addr, backend = ?self.db.backend(), tls = tls.is_some(), "checkout listening");
        let serve = router.serve_with_incoming_shutdown(incoming(self.listener, cfg, tls), signal);
        let grace = Duration::from_secs(cfg.shutdown_grace_seconds);
        tokio::select! {
            served = serve => served?,
            _ = async { if stopping_rx.await.is_ok() { tokio::time::sleep(grace).await } else { std::future::pending().await } } => {
                tracing::warn!(?grace, "grace period over; closing the remaining calls");
            }
        }
        // Workers finish what they are doing (a webhook round ends within one HTTP timeout);
        // past the grace period they are abandoned: leases and the outbox make that safe.
        let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
        if tokio::time::timeout(grace, futures_util::future::join_all(workers))
            .await
            .is_err()
        {
            tracing::warn!(
                "background workers did not stop within the grace period; abandoning them"
            );
            aborts.iter().for_each(|a| a.abort());
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Accepted connections, under the connection cap and the handshake deadline.
fn incoming(
    listener: TcpListener,
    cfg: &ServeConfig,
    tls: Option<TlsState>,
) -> impl futures_util::Stream<Item = std::io::Result<listener::Conn>> + Send {
    let limits = ConnLimits {
        max_connections: listener::fit_to_fd_limit(cfg.conn.max_connections.max(1)),
        handshake_timeout: Duration::from_millis(cfg.conn.handshake_timeout_ms),
    };
    listener::incoming(listener, limits, tls)
}

/// The TLS config from the files, if TLS is configured; bad files stop the start.
fn load_tls(config: &ServeConfig) -> anyhow::Result<Option<(TlsFiles, TlsState)>> {
    let Some(files) = TlsFiles::from_config(&config.tls)? else {
        return Ok(None);
    };
    let loaded = crate::tls::load(&files).context("loading the TLS files")?;
    tracing::info!(
        cert = %files.cert.display(),
        not_after = loaded.not_after.as_deref().unwrap_or("unknown"),
        mtls = files.client_ca.is_some(),
        "TLS on the gRPC listener"
    );
    Ok(Some((files, TlsState::new(loaded.config))))
}

/// Resolves on SIGTERM or ctrl-c. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM that arrived in between (an orchestrator stopping a
/// replica that just started) would otherwise kill the process without a drain.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                _ = received(term.as_mut()) => {},
                _ = received(int.as_mut()) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The next delivery of a signal whose handler is installed (never, if it could not be).
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
