//! A CreateSession request: every rule that needs no database, checked before any write,
//! and the locking of lines against the catalog as it is at creation.
use super::{
    catalog::BillingPeriod,
    email::{BillingDetail, BillingInput, Email},
    ids::ProductId,
    invalid::{optional_text, quoted, Violation, Violations},
    money::{Currency, MinorUnit},
    Invalid,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const DEFAULT_TTL_SECONDS: i64 = 2700;
const TTL_SECONDS: std::ops::RangeInclusive<i64> = 300..=86_400;
const MAX_LINES: usize = 100;

pub type StringMap = BTreeMap<String, String>;

/// What a line of the request says, before any of it is trusted.
#[derive(Debug, Default)]
pub struct LineInput {
    pub product_id: String,
    pub inline: Option<InlineInput>,
    pub quantity: i32,
    pub subscription: bool,
    pub server_id: String,
    pub gift_to: Option<(String, String)>,
    pub custom_variables: StringMap,
    pub metadata: StringMap,
    pub price_snapshot: Option<i64>,
}

#[derive(Debug, Default)]
pub struct InlineInput {
    pub name: String,
    pub description: String,
    pub unit_amount: i64,
    /// `None`: one-time.
    pub billing_period: Option<BillingPeriod>,
    pub trial_days: i32,
}

/// What the request says, after the auth layer's rights were applied (a store slug's
/// ignored fields are already blank here).
#[derive(Debug, Default)]
pub struct SessionInput {
    pub lines: Vec<LineInput>,
    pub currency: String,
    pub customer_id: String,
    pub buyer_email: String,
    pub billing_detail: Option<BillingInput>,
    pub coupon_code: String,
    pub affiliate_code: String,
    pub success_url: String,
    pub cancel_url: String,
    pub auto_redirect: bool,
    pub metadata: StringMap,
    pub order_merchant_external_id: Option<String>,
    pub expires_in_seconds: Option<i64>,
    pub with_trial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum LineSource {
    Catalog(i64),
    Inline {
        name: String,
        description: String,
        unit_amount: MinorUnit,
        billing_period: BillingPeriod,
        trial_days: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineRequest {
    pub source: LineSource,
    pub quantity: i32,
    pub subscription: bool,
    pub server_id: Option<String>,
    pub gift_to: Option<(String, String)>,
    pub custom_variables: StringMap,
    pub metadata: StringMap,
    pub price_snapshot: Option<MinorUnit>,
}

/// A request that passed every rule that needs no database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionRequest {
    pub lines: Vec<LineRequest>,
    /// Three uppercase letters (whether the catalog sells in it is checked per product).
    pub currency: String,
    pub customer_id: Option<String>,
    pub buyer_email: Option<Email>,
    pub billing_detail: Option<BillingDetail>,
    pub coupon_code: Option<String>,
    pub affiliate_code: Option<String>,
    /// As given; checked against the store's origins inside the create transaction.
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub auto_redirect: bool,
    pub metadata: StringMap,
    pub order_merchant_external_id: Option<String>,
    pub ttl_seconds: i64,
    pub with_trial: bool,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// SPEC limits on metadata-like maps: at most 50 keys, keys ≤ 40, values ≤ 500 characters.
pub fn check_map(field: &str, map: &StringMap) -> Result<(), Invalid> {
    let bad = |why: String| Invalid::field(field, format!("{field}: {why}"));
    if map.len() > 50 {
        return Err(bad("at most 50 keys".into()));
    }
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > 40 {
            return Err(bad(format!(
                "keys must be 1 to 40 characters (\"{}\")",
                quoted(k)
            )));
        }
        if v.chars().count() > 500 {
            return Err(bad(format!(
                "value of \"{}\" is longer than 500 characters",
                quoted(k)
            )));
        }
    }
    Ok(())
}

impl SessionRequest {
    /// Every rule that needs no database, checked all at once: the error lists every
    /// violation (paths like `lines[2].quantity`), with the first one's message.
    pub fn parse(input: SessionInput) -> Result<SessionRequest, Invalid> {
        check_required(&input)?;
        let mut v = Violations::default();
        let currency = input.currency.clone();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            v.add(Invalid::field(
                "currency",
                Currency::format_error(&currency),
            ));
        }
        if input.lines.len() > MAX_LINES {
            v.add(Invalid::field("lines", "lines must have at most 100 items"));
            // Past the limit the lines themselves are not looked at.
            v.finish()?;
        }
        let lines: Vec<_> = (input.lines.into_iter().enumerate())
            .filter_map(|(i, l)| {
                v.check(parse_line(l).map_err(|e| e.within(&format!("lines[{i}]"))))
            })
            .collect();
        let order_merchant_external_id = v
            .check(external_id(input.order_merchant_external_id))
            .flatten();
        let billing_detail = input
            .billing_detail
            .as_ref()
            .and_then(|b| v.check(BillingDetail::parse(b)));
        let buyer_email = match input.buyer_email.trim() {
            "" => None,
            raw => v.check(Email::parse(raw).ok_or_else(|| {
                Invalid::field("buyer_email", "buyerEmail: not a valid email address")
            })),
        };
        v.check(check_map("metadata", &input.metadata));
        let ttl_seconds = match input.expires_in_seconds {
            None => DEFAULT_TTL_SECONDS,
            Some(s) if TTL_SECONDS.contains(&s) => s,
            Some(_) => {
                v.add(Invalid::field(
                    "expires_in_seconds",
                    "expiresInSeconds must be between 300 and 86400",
                ));
                DEFAULT_TTL_SECONDS
            }
        };
        let success_url = non_empty(input.success_url.trim().to_owned());
        if input.auto_redirect && success_url.is_none() {
            v.add(Invalid::field(
                "auto_redirect",
                "autoRedirect requires successUrl",
            ));
        }
        let mut text = |field, value: &str, max| {
            v.check(optional_text(field, value, max))
                .and_then(non_empty)
        };
        let customer_id = text("customer_id", &input.customer_id, 128);
        let coupon_code = text("coupon_code", &input.coupon_code, 64);
        let affiliate_code = text("affiliate_code", &input.affiliate_code, 64);
        v.finish()?;
        Ok(SessionRequest {
            lines,
            currency,
            customer_id,
            buyer_email,
            billing_detail,
            coupon_code,
            affiliate_code,
            success_url,
            cancel_url: non_empty(input.cancel_url.trim().to_owned()),
            auto_redirect: input.auto_redirect,
            metadata: input.metadata,
            order_merchant_external_id,
            ttl_seconds,
            with_trial: input.with_trial,
        })
    }

    /// Identifies the request for idempotency: the SHA-256 of its canonical (normalized,
    /// key-sorted) form, so a retry matches however its maps were ordered on the wire.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("serializable");
        hex::encode(Sha256::digest(canonical))
    }

    /// The catalog products the request names, each once.
    pub fn product_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .lines
            .iter()
            .filter_map(|l| match l.source {
                LineSource::Catalog(id) => Some(id),
                LineSource::Inline { .. } => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// SPEC: `Missing required fields: productId, currency`, naming only what is missing.
fn check_required(input: &SessionInput) -> Result<(), Invalid> {
    let mut violations = Vec::new();
    if input.lines.is_empty() {
        violations.push(("lines".to_owned(), "productId"));
    }
    for (i, l) in input.lines.iter().enumerate() {
        if l.product_id.trim().is_empty() && l.inline.is_none() {
            violations.push((format!("lines[{i}].product_id"), "productId"));
        }
    }
    if input.currency.trim().is_empty() {
        violations.push(("currency".to_owned(), "currency"));
    }
    if violations.is_empty() {
        return Ok(());
    }
    let mut names: Vec<&str> = violations.iter().map(|(_, n)| *n).collect();
    names.dedup();
    Err(Invalid {
        message: format!("Missing required fields: {}", names.join(", ")),
        violations: violations
            .into_iter()
            .map(|(field, name)| Violation {
                field,
                description: format!("{name} is required"),
            })
            .collect(),
    })
}

/// `orderMerchantExternalId`: absent, or 1–128 characters after trimming.
fn external_id(raw: Option<String>) -> Result<Option<String>, Invalid> {
    let Some(raw) = raw else { return Ok(None) };
    let field = "order_merchant_external_id";
    let v = raw.trim();
    if v.is_empty() {
        return Err(Invalid::field(
            field,
            "orderMerchantExternalId must not be empty",
        ));
    }
    if v.chars().count() > 128 {
        return Err(Invalid::field(
            field,
            "orderMerchantExternalId must be at most 128 characters",
        ));
    }
    optional_text(field, v, 128).map(Some)
}

/// One line's rules, every violation of the line at once (paths relative to the line).
fn parse_line(l: LineInput) -> Result<LineRequest, Invalid> {
    let mut v = Violations::default();
    let source = match (l.product_id.trim(), l.inline) {
        (id, None) => v
            .check(product_short_id(id))
            .map(|id| LineSource::Catalog(id.get())),
        ("", Some(p)) => v.check(inline_source(p).map_err(|e| e.within("inline_product"))),
        (_, Some(_)) => {
            v.add(Invalid::field(
                "product_id",
                "set product_id or inline_product, not both",
            ));
            None
        }
    };
    if !(1..=999).contains(&l.quantity) {
        v.add(Invalid::field("quantity", "quantity must be 1 to 999"));
    }
    let gift_to = l.gift_to.and_then(|(platform, id)| {
        let platform = v.check(super::invalid::required_text(
            "gift_to.platform",
            &platform,
            32,
        ));
        let id = v.check(super::invalid::required_text("gift_to.id", &id, 128));
        platform.zip(id)
    });
    v.check(check_map("custom_variables", &l.custom_variables));
    v.check(check_map("metadata", &l.metadata));
    let server_id = v
        .check(optional_text("server_id", &l.server_id, 128))
        .and_then(non_empty);
    let price_snapshot = l
        .price_snapshot
        .and_then(|p| v.check(MinorUnit::new("price_snapshot", p)));
    v.finish()?;
    Ok(LineRequest {
        source: source.expect("checked"),
        quantity: l.quantity,
        subscription: l.subscription,
        server_id,
        gift_to,
        custom_variables: l.custom_variables,
        metadata: l.metadata,
        price_snapshot,
    })
}

/// An inline product's fields (paths relative to `inline_product`).
fn inline_source(p: InlineInput) -> Result<LineSource, Invalid> {
    let mut v = Violations::default();
    let billing_period = p.billing_period.unwrap_or(BillingPeriod::OneTime);
    if !(0..=365).contains(&p.trial_days)
        || (p.trial_days > 0 && billing_period == BillingPeriod::OneTime)
    {
        v.add(Invalid::field(
            "trial_days",
            "trial_days must be 0 to 365, and 0 for one-time products",
        ));
    }
    let name = v.check(super::invalid::required_text("name", &p.name, 200));
    let description = v.check(optional_text("description", &p.description, 2000));
    let unit_amount = v.check(MinorUnit::new("unit_amount", p.unit_amount));
    v.finish()?;
    Ok(LineSource::Inline {
        name: name.expect("checked"),
        description: description.expect("checked"),
        unit_amount: unit_amount.expect("checked"),
        billing_period,
        trial_days: p.trial_days,
    })
}

/// SPEC: INVALID_ARGUMENT `Expected format: PROD_xxx, got "..."`.
pub fn product_short_id(raw: &str) -> Result<ProductId, Invalid> {
    ProductId::parse(raw.trim()).ok_or_else(|| {
        Invalid::field(
            "product_id",
            format!("Expected format: PROD_xxx, got \"{}\"", quoted(raw)),
        )
    })
}
