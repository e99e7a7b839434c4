//! The one error the domain produces: a request that cannot be accepted as it is. The
//! gRPC layer turns it into INVALID_ARGUMENT with `google.rpc.BadRequest` field violations.

use std::borrow::Cow;

/// The most characters of a client's value an error message quotes. Values are echoed so a
/// developer can see what was wrong, but never unbounded: a 200,000-character currency
/// would otherwise come back in a 200 KB `grpc-message` (and again in the BadRequest
/// details), past what gRPC clients accept in metadata.
pub const QUOTE_MAX_CHARS: usize = 64;

/// A client value as error messages quote it: whole when short, else its first
/// [`QUOTE_MAX_CHARS`] characters and `…`. Every message that quotes a request value goes
/// through here.
pub fn quoted(raw: &str) -> Cow<'_, str> {
    match raw.char_indices().nth(QUOTE_MAX_CHARS) {
        None => Cow::Borrowed(raw),
        Some((cut, _)) => Cow::Owned(format!("{}…", &raw[..cut])),
    }
}

/// One field that failed, with a description a developer can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The client-visible message (exact wording matters: clients match on it).
    pub message: String,
    pub violations: Vec<Violation>,
}

impl Invalid {
    /// A failure of one field whose description is also the message.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Invalid {
            violations: vec![Violation {
                field: field.into(),
                description: message.clone(),
            }],
            message,
        }
    }

    /// Prefixes the field path, e.g. `prices[2]` + `.currency`.
    pub fn within(mut self, prefix: &str) -> Self {
        for v in &mut self.violations {
            v.field = format!("{prefix}.{}", v.field);
        }
        self
    }
}

/// Collects every violation of a request, so a client learns all that is wrong in one
/// round trip; the message stays the first violation's (clients match on it).
#[derive(Debug, Default)]
pub struct Violations(Option<Invalid>);

impl Violations {
    /// The value of a check that passed; a failed one is recorded and gives `None`.
    pub fn check<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(e);
                None
            }
        }
    }

    pub fn add(&mut self, e: Invalid) {
        match &mut self.0 {
            None => self.0 = Some(e),
            Some(first) => first.violations.extend(e.violations),
        }
    }

    /// Err with everything collected so far (which is then cleared), or Ok.
    pub fn finish(&mut self) -> Result<(), Invalid> {
        self.0.take().map_or(Ok(()), Err)
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Invalid {}

/// A required text field: trimmed, non-empty, at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Invalid::field(field, format!("{field} is required")));
    }
    optional_text(field, value, max)
}

/// An optional text field: trimmed, at most `max` characters, no control characters.
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(Invalid::field(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::field(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_cuts_long_values_on_a_char_boundary() {
        assert_eq!(super::quoted("USD"), "USD");
        let exact = "é".repeat(super::QUOTE_MAX_CHARS);
        assert_eq!(super::quoted(&exact), exact);
        let long = "é".repeat(200_000);
        let shown = super::quoted(&long);
        assert_eq!(shown.chars().count(), super::QUOTE_MAX_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
