//! Protobuf ↔ domain conversions shared by the handlers.
use crate::{
    domain::{catalog::BillingPeriod, time::Timestamp, Environment, Invalid},
    error::AppError,
    pb,
};

pub fn timestamp(t: i64) -> prost_types::Timestamp {
    let t = Timestamp(t);
    prost_types::Timestamp {
        seconds: t.seconds(),
        nanos: t.subsec_nanos(),
    }
}

pub fn opt_timestamp(t: Option<i64>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

pub fn from_timestamp(field: &str, t: &prost_types::Timestamp) -> Result<Timestamp, Invalid> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Invalid::field(field, format!("{field} has invalid nanos")));
    }
    Timestamp::from_seconds_nanos(t.seconds, t.nanos)
        .ok_or_else(|| Invalid::field(field, format!("{field} is out of range")))
}

/// A required environment field of a request.
pub fn environment(field: &str, raw: i32) -> Result<Environment, Invalid> {
    match pb::Environment::try_from(raw) {
        Ok(pb::Environment::Test) => Ok(Environment::Test),
        Ok(pb::Environment::Prod) => Ok(Environment::Prod),
        _ => Err(Invalid::field(
            field,
            format!("{field} must be ENVIRONMENT_TEST or ENVIRONMENT_PROD"),
        )),
    }
}

pub fn environment_to_pb(env: Environment) -> i32 {
    match env {
        Environment::Test => pb::Environment::Test as i32,
        Environment::Prod => pb::Environment::Prod as i32,
    }
}

/// An environment as stored in the database.
pub fn stored_environment(s: &str) -> Result<i32, AppError> {
    crate::db::stored("environment", s.parse().ok()).map(environment_to_pb)
}

pub fn billing_period(field: &str, raw: i32) -> Result<BillingPeriod, Invalid> {
    match pb::BillingPeriod::try_from(raw) {
        Ok(pb::BillingPeriod::OneTime) => Ok(BillingPeriod::OneTime),
        Ok(pb::BillingPeriod::Month) => Ok(BillingPeriod::Month),
        Ok(pb::BillingPeriod::Year) => Ok(BillingPeriod::Year),
        _ => Err(Invalid::field(
            field,
            format!("{field} must be BILLING_PERIOD_ONE_TIME, _MONTH or _YEAR"),
        )),
    }
}

pub fn billing_period_to_pb(s: &str) -> Result<i32, AppError> {
    let period = crate::db::stored("billing_period", BillingPeriod::from_db(s))?;
    Ok(match period {
        BillingPeriod::OneTime => pb::BillingPeriod::OneTime,
        BillingPeriod::Month => pb::BillingPeriod::Month,
        BillingPeriod::Year => pb::BillingPeriod::Year,
    } as i32)
}

/// A message field the request must carry.
pub fn required<'a, T>(field: &str, value: &'a Option<T>) -> Result<&'a T, Invalid> {
    value
        .as_ref()
        .ok_or_else(|| Invalid::field(field, format!("{field} is required")))
}

/// An id field that must have the shape of ids this service hands out.
pub fn id<T>(field: &str, raw: &str, parse: fn(&str) -> Option<T>) -> Result<T, Invalid> {
    parse(raw.trim()).ok_or_else(|| Invalid::field(field, format!("{field} is not a valid id")))
}

/// The paths of an update mask, each checked against the fields the resource allows.
pub fn mask_paths<'a>(
    mask: &'a Option<prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Vec<&'a str>, Invalid> {
    let paths: Vec<&str> = mask
        .as_ref()
        .map(|m| m.paths.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(Invalid::field(
            "update_mask",
            "update_mask must name the fields to change",
        ));
    }
    if let Some(bad) = paths.iter().find(|p| !allowed.contains(p)) {
        return Err(Invalid::field(
            "update_mask",
            format!(
                "update_mask: unknown or immutable field \"{}\" (allowed: {})",
                crate::domain::quoted(bad),
                allowed.join(", ")
            ),
        ));
    }
    Ok(paths)
}

/// Page size of a list call: 0 means the default of 20; at most 100.
pub fn page_size(raw: i32) -> Result<i64, Invalid> {
    match raw {
        0 => Ok(20),
        1..=100 => Ok(i64::from(raw)),
        _ => Err(Invalid::field("page_size", "page_size must be 0 to 100")),
    }
}
