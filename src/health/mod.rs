//! `grpc.health.v1.Health`, and what it follows: the database (a probe, `probe.rs`) and
//! shutdown. One status covers `""` and every checkout service, because they all stand or
//! fall with the database and all stop together.
//!
//! * SERVING while the last probe reached the database and no shutdown has begun.
//! * NOT_SERVING while the database is unreachable (back to SERVING when it answers again),
//!   and from the moment a shutdown begins; nothing turns it back during a shutdown.
//! * While the database is known to be down, checkout calls fail at once with UNAVAILABLE
//!   (`gate.rs`) instead of each waiting the pool's connect timeout.
//! * On shutdown: NOT_SERVING first, then the server keeps accepting and serving for
//!   `CHECKOUT_SHUTDOWN_DELAY_SECONDS` (so balancers see the status change before
//!   connections are refused), then open Health/Watch streams end with UNAVAILABLE and the
//!   server drains. This is our own small implementation over tonic-health's generated
//!   types: tonic-health's reporter keeps every Watch stream open until the process ends,
//!   which held shutdown for the whole grace period.
pub mod gate;
pub mod probe;

use futures_util::Stream;
use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::{
    health_check_response::ServingStatus,
    health_server::{Health as HealthApi, HealthServer},
    HealthCheckRequest, HealthCheckResponse,
};

/// Health settings. Env vars: `CHECKOUT_HEALTH_PROBE_MS` (1000),
/// `CHECKOUT_SHUTDOWN_DELAY_SECONDS` (5 with PostgreSQL, 0 with SQLite).
#[derive(clap::Args, Debug, Clone)]
pub struct HealthConfig {
    /// How often the database is probed; a probe not answered within this period (at least
    /// 1 s) counts as a failure. Health turns NOT_SERVING after a probe and its immediate
    /// retry both fail.
    #[arg(
        long,
        env = "CHECKOUT_HEALTH_PROBE_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(50..)
    )]
    pub health_probe_ms: u64,
    /// On SIGTERM/ctrl-c: how long health reports NOT_SERVING while the server still
    /// accepts and serves, before it drains. Default: 5 with PostgreSQL (replicas behind a
    /// balancer, which needs time to see NOT_SERVING and stop sending new connections), 0
    /// with SQLite (one process, nobody to warn; ctrl-c stops at once).
    #[arg(long, env = "CHECKOUT_SHUTDOWN_DELAY_SECONDS")]
    pub shutdown_delay_seconds: Option<u64>,
}

impl HealthConfig {
    /// The shutdown delay, given the backend when none was set.
    pub fn shutdown_delay(&self, backend: crate::db::Backend) -> Duration {
        let default = match backend {
            crate::db::Backend::Postgres => 5,
            crate::db::Backend::Sqlite => 0,
        };
        Duration::from_secs(self.shutdown_delay_seconds.unwrap_or(default))
    }
}

/// The service names health answers for: `""` (the whole server) and these.
#[derive(Clone)]
pub struct Health(Arc<Shared>);

struct Shared {
    names: Vec<String>,
    /// Why we are (not) serving; the status is derived from it under this lock, so a probe
    /// cannot turn a shutting-down server back to SERVING.
    flags: Mutex<Flags>,
    status: watch::Sender<ServingStatus>,
    /// True once Watch streams must end (draining begins).
    ended: watch::Sender<bool>,
}

#[derive(Clone, Copy)]
struct Flags {
    db_up: bool,
    stopping: bool,
}

impl Health {
    /// SERVING for `""` and each of `services` (migrations ran before this is made).
    pub fn new(services: &[&str]) -> Health {
        let names = std::iter::once("")
            .chain(services.iter().copied())
            .map(str::to_owned)
            .collect();
        Health(Arc::new(Shared {
            names,
            flags: Mutex::new(Flags {
                db_up: true,
                stopping: false,
            }),
            status: watch::channel(ServingStatus::Serving).0,
            ended: watch::channel(false).0,
        }))
    }

    pub fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService(self.clone()))
    }

    /// Whether the last probe found the database unreachable.
    pub fn db_down(&self) -> bool {
        !self.flags().db_up
    }

    /// Records a probe result; true when it changed what we knew.
    pub fn set_db_reachable(&self, up: bool) -> bool {
        self.update(|f| std::mem::replace(&mut f.db_up, up) != up)
    }

    /// The shutdown sequence before draining: NOT_SERVING at once, keep serving for
    /// `delay`, then end the open Health/Watch streams (after they got NOT_SERVING).
    pub async fn shut_down(&self, delay: Duration) {
        self.update(|f| f.stopping = true);
        if !delay.is_zero() {
            tracing::info!(
                ?delay,
                "shutting down: health NOT_SERVING, still serving for the shutdown delay"
            );
            tokio::time::sleep(delay).await;
        }
        self.0.ended.send_replace(true);
    }

    fn flags(&self) -> Flags {
        *self.0.flags.lock().expect("health lock")
    }

    fn update<R>(&self, change: impl FnOnce(&mut Flags) -> R) -> R {
        let mut flags = self.0.flags.lock().expect("health lock");
        let result = change(&mut flags);
        let status = if flags.db_up && !flags.stopping {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        // Watchers hear about changes only, not about every probe.
        self.0.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
        result
    }

    fn known(&self, service: &str) -> Result<(), Status> {
        if self.0.names.iter().any(|n| n == service) {
            Ok(())
        } else {
            // tonic-health's wording, which clients of this server have seen so far.
            Err(Status::not_found("service not registered"))
        }
    }
}

/// The gRPC face of [`Health`].
pub struct HealthService(Health);

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

fn reply(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl HealthApi for HealthService {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.0.known(&req.get_ref().service)?;
        Ok(Response::new(reply(*self.0 .0.status.borrow())))
    }

    type WatchStream = WatchStream;

    /// The current status, then every change; once draining begins, UNAVAILABLE (after any
    /// status not yet sent), so the stream does not hold the shutdown.
    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.0.known(&req.get_ref().service)?;
        let state = WatchState {
            status: self.0 .0.status.subscribe(),
            ended: self.0 .0.ended.subscribe(),
            last: None,
            done: false,
        };
        Ok(Response::new(Box::pin(futures_util::stream::unfold(
            state, next,
        ))))
    }
}

struct WatchState {
    status: watch::Receiver<ServingStatus>,
    ended: watch::Receiver<bool>,
    last: Option<ServingStatus>,
    done: bool,
}

type Item = Result<HealthCheckResponse, Status>;

async fn next(mut s: WatchState) -> Option<(Item, WatchState)> {
    if s.done {
        return None;
    }
    loop {
        let current = *s.status.borrow_and_update();
        if s.last != Some(current) {
            s.last = Some(current);
            return Some((Ok(reply(current)), s));
        }
        if *s.ended.borrow() {
            s.done = true;
            let end = Status::unavailable(
                "server is shutting down; watch again to reach another replica",
            );
            return Some((Err(end), s));
        }
        tokio::select! {
            changed = s.status.changed() => if changed.is_err() { return None },
            _ = s.ended.wait_for(|ended| *ended) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shutdown_delay_defaults_by_backend() {
        use crate::db::Backend;
        let unset = super::HealthConfig {
            health_probe_ms: 1000,
            shutdown_delay_seconds: None,
        };
        assert_eq!(unset.shutdown_delay(Backend::Postgres).as_secs(), 5);
        assert_eq!(unset.shutdown_delay(Backend::Sqlite).as_secs(), 0);
        let set = super::HealthConfig {
            shutdown_delay_seconds: Some(2),
            ..unset
        };
        assert_eq!(set.shutdown_delay(Backend::Postgres).as_secs(), 2);
    }
}
