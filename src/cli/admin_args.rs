//! The flags of `checkout admin …`: one subcommand per AdminService RPC.
use crate::pb;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AdminOp {
    /// Creates a store (no API checkout until it has a return origin).
    CreateStore {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        active: bool,
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        approved_for_prod: bool,
        /// An allowed return origin, e.g. https://shop.example.com (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
    },
    /// Shows a store.
    GetStore {
        #[arg(long)]
        store_id: String,
    },
    /// Changes only the fields given.
    UpdateStore {
        #[arg(long)]
        store_id: String,
        #[arg(long)]
        slug: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        active: Option<bool>,
        #[arg(long)]
        approved_for_prod: Option<bool>,
        /// Replaces the allowed return origins (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Removes every allowed return origin (disables API checkout).
        #[arg(long, conflicts_with = "origins")]
        clear_origins: bool,
    },
    /// Creates a secret API key for one environment; prints the secret once.
    CreateApiKey {
        #[arg(long)]
        store_id: String,
        #[arg(long, value_parser = ["test", "prod"])]
        environment: String,
    },
    /// Revokes an API key; every replica refuses it within seconds.
    RevokeApiKey {
        #[arg(long)]
        api_key_id: String,
    },
    /// Creates a product (sell it by creating and activating a version).
    CreateProduct {
        #[arg(long)]
        store_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        requires_server_selection: bool,
    },
    /// Shows a product with its versions.
    GetProduct {
        #[arg(long)]
        product_id: String,
    },
    /// Changes only the fields given (e.g. `--active false` archives a product).
    UpdateProduct {
        #[arg(long)]
        product_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        requires_server_selection: Option<bool>,
        #[arg(long)]
        active: Option<bool>,
    },
    /// Creates an immutable product version with its prices.
    CreateProductVersion {
        #[arg(long)]
        product_id: String,
        /// CURRENCY=MINOR_UNITS, e.g. USD=1999 (repeatable).
        #[arg(long = "price", required = true, value_parser = parse_price)]
        prices: Vec<pb::Price>,
        #[arg(long, value_parser = ["one-time", "month", "year"], default_value = "one-time")]
        billing_period: String,
        #[arg(long, default_value_t = 0)]
        trial_days: i32,
    },
    /// Makes a version the one sold in an environment.
    ActivateProductVersion {
        #[arg(long)]
        product_version_id: String,
        #[arg(long, value_parser = ["test", "prod"])]
        environment: String,
    },
    /// Creates a coupon: --percent-off, or --amount-off with --currency.
    CreateCoupon {
        #[arg(long)]
        store_id: String,
        #[arg(long)]
        code: String,
        #[arg(long, conflicts_with = "amount_off")]
        percent_off: Option<i32>,
        #[arg(long)]
        amount_off: Option<i64>,
        /// The currency of --amount-off and --minimum-amount (ISO 4217, e.g. USD).
        #[arg(long, default_value = "")]
        currency: String,
        /// RFC 3339, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<prost_types::Timestamp>,
        #[arg(long, default_value_t = 0)]
        max_redemptions: i32,
        /// Smallest subtotal the coupon applies to, in minor units of --currency.
        #[arg(long, default_value_t = 0)]
        minimum_amount: i64,
    },
    /// Registers a webhook endpoint; prints its signing secret once.
    CreateWebhookEndpoint {
        #[arg(long)]
        store_id: String,
        #[arg(long, value_parser = ["test", "prod"])]
        environment: String,
        #[arg(long)]
        url: String,
    },
    /// Lists webhook delivery attempts, newest first.
    ListWebhookDeliveries {
        #[arg(long)]
        store_id: String,
        #[arg(long, default_value = "")]
        endpoint_id: String,
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// The listing and management subcommands (`super::admin_more`).
    #[command(flatten)]
    More(super::admin_more::MoreOp),
}

fn parse_price(raw: &str) -> Result<pb::Price, String> {
    let (currency, amount) = raw
        .split_once('=')
        .ok_or("expected CURRENCY=AMOUNT, e.g. USD=1999")?;
    let unit_amount = amount
        .parse()
        .map_err(|_| format!("not an integer amount: {amount}"))?;
    Ok(pb::Price {
        currency: currency.to_owned(),
        unit_amount,
    })
}
