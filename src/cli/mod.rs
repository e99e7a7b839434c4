//! The command line: `checkout [serve]`, `checkout migrate`, `checkout admin …`,
//! `checkout health`, `checkout events tail …`.
//! Admin commands run the AdminService handlers in-process against the database, so they
//! share every rule and message with the gRPC API, and print the same JSON grpcurl would.
mod admin;
mod admin_args;
mod admin_more;
mod events;
mod health;

pub use admin::run_admin;
pub use admin_args::AdminOp;
pub use events::{run_events, EventsArgs, EventsOp};
pub use health::{run_health, HealthArgs};

use crate::config::{DbConfig, ServeConfig};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "checkout",
    version,
    about = "Checkout sessions over gRPC",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, `checkout` serves with these settings.
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Subcommand, Debug)]
// Parsed once at start: the size of the serve settings costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve(ServeConfig),
    /// Apply pending migrations and exit.
    Migrate(DbConfig),
    /// Provision stores, keys, catalog and webhooks (AdminService, run in-process).
    Admin(AdminArgs),
    /// Probe a running server's gRPC health (exit 0 only when SERVING): for HEALTHCHECKs.
    Health(HealthArgs),
    /// Read a store's event feed (`checkout events tail`), straight from the database.
    Events(EventsArgs),
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    pub db: DbConfig,
    /// Allow loopback/private/link-local webhook targets (local testing only).
    #[arg(long, env = "CHECKOUT_WEBHOOK_ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private_targets: bool,
    /// Seals the secrets of endpoints it creates: the same key as the server's.
    #[command(flatten)]
    pub secrets: crate::secrets::SecretsConfig,
    #[command(subcommand)]
    pub op: AdminOp,
}
