//! Locking a request's lines against the catalog as it is at creation: the version sold in
//! the session's environment, its price in the session's currency (or the merchant's
//! snapshot), its billing period and trial.
use super::{
    catalog::BillingPeriod,
    checkout::{LineRequest, LineSource, SessionRequest},
    money::{Currency, MinorUnit},
    quoted, Invalid, Rejection,
};
use std::collections::HashMap;

/// What the catalog says about one product at this moment, for this environment and
/// currency.
#[derive(Debug, Clone)]
pub struct ProductFacts {
    pub store_id: String,
    pub name: String,
    pub active: bool,
    pub requires_server_selection: bool,
    /// The version sold in the environment, if any.
    pub version: Option<VersionFacts>,
}

#[derive(Debug, Clone)]
pub struct VersionFacts {
    pub id: String,
    pub billing_period: BillingPeriod,
    pub trial_days: i32,
    /// The catalog price in the session's currency, if the version has one.
    pub unit_amount: Option<i64>,
}

/// A line as locked into the session.
#[derive(Debug, Clone)]
pub struct LockedLine {
    pub request: LineRequest,
    pub product_id: Option<i64>,
    pub product_version_id: Option<String>,
    pub product_name: String,
    pub unit_amount: MinorUnit,
    pub billing_period: BillingPeriod,
    pub trial_days: i32,
}

/// Locks every line against the catalog. Each rule runs over all lines before the next,
/// in the order of the SPEC's table, so the error a client sees does not depend on which
/// line it put first.
pub fn lock_lines(
    req: &SessionRequest,
    store_id: &str,
    catalog: &HashMap<i64, ProductFacts>,
) -> Result<Vec<LockedLine>, Rejection> {
    let catalog_lines = || {
        req.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l.source {
                LineSource::Catalog(id) => Some((i, l, id)),
                LineSource::Inline { .. } => None,
            })
    };
    let facts = |id: i64| {
        catalog
            .get(&id)
            .ok_or_else(|| Rejection::NotFound("Product not found".into()))
    };
    for (_, _, id) in catalog_lines() {
        facts(id)?;
    }
    for (_, _, id) in catalog_lines() {
        if facts(id)?.store_id != store_id {
            return Err(Rejection::Forbidden(
                "Product does not belong to this store".into(),
            ));
        }
    }
    for (_, _, id) in catalog_lines() {
        if facts(id)?.version.is_none() {
            return Err(Rejection::NotFound(
                "Product not found or not active for this environment".into(),
            ));
        }
    }
    for (i, _, id) in catalog_lines() {
        if !facts(id)?.active {
            return Err(Invalid::field(
                format!("lines[{i}]"),
                "One or more packages are not found or inactive",
            )
            .into());
        }
    }
    for (i, line, id) in catalog_lines() {
        let p = facts(id)?;
        if p.requires_server_selection && line.server_id.is_none() {
            let msg = format!("Package '{}' requires a server selection", quoted(&p.name));
            return Err(Invalid::field(format!("lines[{i}].server_id"), msg).into());
        }
    }
    let mut locked = Vec::with_capacity(req.lines.len());
    for (i, line) in req.lines.iter().enumerate() {
        let l = match &line.source {
            LineSource::Inline {
                name,
                unit_amount,
                billing_period,
                trial_days,
                ..
            } => LockedLine {
                request: line.clone(),
                product_id: None,
                product_version_id: None,
                product_name: name.clone(),
                unit_amount: *unit_amount,
                billing_period: *billing_period,
                trial_days: *trial_days,
            },
            LineSource::Catalog(id) => {
                let p = facts(*id)?;
                let v = p.version.as_ref().expect("checked above");
                let unit_amount = match (line.price_snapshot, v.unit_amount) {
                    (Some(snapshot), _) => snapshot,
                    (None, Some(price)) => MinorUnit::new("unit_amount", price)?,
                    (None, None) => {
                        let msg = format!(
                            "Currency {} is not supported for this product",
                            quoted(&req.currency)
                        );
                        return Err(Invalid::field("currency", msg).into());
                    }
                };
                LockedLine {
                    request: line.clone(),
                    product_id: Some(*id),
                    product_version_id: Some(v.id.clone()),
                    product_name: p.name.clone(),
                    unit_amount,
                    billing_period: v.billing_period,
                    trial_days: v.trial_days,
                }
            }
        };
        if line.subscription && l.billing_period == BillingPeriod::OneTime {
            return Err(Invalid::field(
                format!("lines[{i}].subscription"),
                "subscription requires a recurring product (billing period MONTH or YEAR)",
            )
            .into());
        }
        locked.push(l);
    }
    // Every product that sells in a currency sells in a known one; a session of inline or
    // snapshot-priced lines must still name a real currency.
    Currency::parse("currency", &req.currency).map_err(|_| {
        Invalid::field(
            "currency",
            format!("Currency {} is not supported", quoted(&req.currency)),
        )
    })?;
    Ok(locked)
}
