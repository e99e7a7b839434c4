//! What an endpoint subscribes to, and how long a rotated-out secret keeps signing.
use super::Invalid;

/// Every event type the service sends; an endpoint may narrow its subscription to some.
pub const EVENT_TYPES: [&str; 2] = ["order.completed", "checkout.session.expired"];

/// The stored form of a subscription: the known types, de-duplicated, in `EVENT_TYPES`
/// order, comma-separated; empty means every type (also what endpoints registered before
/// subscriptions existed have). The outbox fan-out matches against this form in SQL.
pub fn event_types(raw: &[String]) -> Result<String, Invalid> {
    for (i, t) in raw.iter().enumerate() {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(Invalid::field(
                format!("event_types[{i}]"),
                format!(
                    "event_types: unknown event type; expected one of {}",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
    }
    let chosen: Vec<&str> = EVENT_TYPES
        .into_iter()
        .filter(|t| raw.iter().any(|r| r == t))
        .collect();
    Ok(chosen.join(","))
}

/// The stored form back as a list (empty: every type).
pub fn event_type_list(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The overlap of a rotation when the request names none: a day, time enough for every
/// receiver's deploy to pick up the new secret.
pub const DEFAULT_OVERLAP_SECS: i64 = 24 * 3600;
/// The longest overlap: the old secret must not sign for long after it was replaced.
pub const MAX_OVERLAP_SECS: i64 = 7 * 24 * 3600;

/// The overlap in microseconds, from whole seconds and nanos (a protobuf Duration).
pub fn overlap(duration: Option<(i64, i32)>) -> Result<i64, Invalid> {
    let Some((seconds, nanos)) = duration else {
        return Ok(DEFAULT_OVERLAP_SECS * 1_000_000);
    };
    if seconds < 0
        || nanos < 0
        || !(0..1_000_000_000).contains(&nanos)
        || seconds > MAX_OVERLAP_SECS
        || (seconds == MAX_OVERLAP_SECS && nanos > 0)
    {
        return Err(Invalid::field(
            "overlap",
            "overlap must be between 0 and 7 days (168h)",
        ));
    }
    Ok(seconds * 1_000_000 + i64::from(nanos) / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_canonical() {
        let raw = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(event_types(&[]).unwrap(), "");
        assert_eq!(
            event_types(&raw(&[
                "checkout.session.expired",
                "order.completed",
                "order.completed"
            ]))
            .unwrap(),
            "order.completed,checkout.session.expired"
        );
        let err = event_types(&raw(&["order.completed", "order.*"])).unwrap_err();
        assert_eq!(err.violations[0].field, "event_types[1]");
        assert_eq!(event_type_list("order.completed"), ["order.completed"]);
        assert!(event_type_list("").is_empty());
    }

    #[test]
    fn overlap_bounds() {
        assert_eq!(overlap(None).unwrap(), 86_400_000_000);
        assert_eq!(overlap(Some((0, 0))).unwrap(), 0);
        assert_eq!(overlap(Some((3, 500_000_000))).unwrap(), 3_500_000);
        assert!(overlap(Some((MAX_OVERLAP_SECS, 1))).is_err());
        assert!(overlap(Some((-1, 0))).is_err());
    }
}
