//! `checkout events tail`: a store's event feed as JSON lines, for operators. It reads the
//! database directly (no API key needed, like `checkout admin`) through the same code as
//! ListEvents, so each line is exactly the `Event` a client would get, cursor included.
use crate::{
    config::DbConfig,
    db::Db,
    domain::{ids::StoreId, Environment},
    grpc::{feed::Feed, session_pb::SessionView},
    pb,
};
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::{io::Write, sync::Arc, time::Duration};

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(subcommand)]
    pub op: EventsOp,
}

#[derive(Subcommand, Debug)]
pub enum EventsOp {
    /// Print a store's events as JSON lines, oldest first (from the oldest retained, or
    /// after --after); with --follow, keep printing new ones as they commit.
    Tail {
        #[arg(long)]
        store_id: String,
        #[arg(long, value_parser = ["test", "prod"])]
        environment: String,
        /// Resume after this cursor (the `cursor` of the last line printed before).
        #[arg(long, default_value = "")]
        after: String,
        /// Keep running and print new events (polled every 500 ms).
        #[arg(long)]
        follow: bool,
        /// Shown in each session's `hosted_url`, as the server would.
        #[arg(
            long,
            env = "CHECKOUT_HOSTED_URL_TEMPLATE",
            default_value = "https://checkout.example.com/s/{CHECKOUT_SESSION_ID}"
        )]
        hosted_url_template: String,
    },
}

/// How often `--follow` looks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
const PAGE: i64 = 500;

pub async fn run_events(args: EventsArgs) -> anyhow::Result<()> {
    let EventsOp::Tail {
        store_id,
        environment,
        after,
        follow,
        hosted_url_template,
    } = args.op;
    let environment: Environment = environment
        .parse()
        .map_err(|()| anyhow!("--environment must be test or prod"))?;
    let db = Db::connect(&args.db.database_url, &args.db.pool_options()).await?;
    let feed = Feed {
        db,
        view: Arc::new(SessionView {
            hosted_url_template,
        }),
        store_id: StoreId::from_trusted(store_id),
        environment,
    };
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).context("descriptor set")?;
    let desc = pool
        .get_message_by_name("checkout.v1.Event")
        .context("no descriptor for checkout.v1.Event")?;
    let mut position = feed.position(&after).map_err(|e| anyhow!("{e}"))?;
    let mut out = std::io::stdout().lock();
    loop {
        let events = feed
            .page(position, PAGE)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        for event in &events {
            let dynamic = DynamicMessage::decode(desc.clone(), event.encode_to_vec().as_slice())?;
            writeln!(out, "{}", serde_json::to_string(&dynamic)?)?;
        }
        out.flush()?;
        if let Some(last) = events.last() {
            position = feed.position(&last.cursor).map_err(|e| anyhow!("{e}"))?;
            continue;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
