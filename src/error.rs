//! Error policy.
//!
//! * Every handler returns `Result<_, AppError>`; the conversion to `tonic::Status` below is
//!   the only place a client-visible error is made, so the wording rules live here once.
//! * Client errors (bad input, not found, forbidden, conflicts) carry their exact message:
//!   clients and the SPEC depend on it. INVALID_ARGUMENT also carries
//!   `google.rpc.BadRequest` field violations.
//! * Server-side failures are opaque to clients: storage unreachable becomes UNAVAILABLE
//!   (retryable), anything else INTERNAL `Internal server error`. Their cause is logged
//!   exactly once, when the status is made, and never sent: no SQL text, no secrets, no
//!   stack traces cross the wire.
//! * Client values quoted in messages are cut by `crate::domain::quoted` where the message
//!   is written; below, a backstop bounds every client error's message and details so that
//!   its metadata (`grpc-message` + `grpc-status-details-bin`) stays far under the 8 KiB
//!   gRPC clients accept, whatever a future message quotes.
//! * There is one `From<diesel::result::Error>`; queries that expect a specific database
//!   error (a unique violation meaning "already exists") match it where they run.
use crate::domain::Invalid;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(Invalid),
    /// UNAUTHENTICATED `Unauthorized`: deliberately says nothing about what was wrong.
    #[error("Unauthorized")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{message}")]
    FailedPrecondition {
        message: String,
        /// `google.rpc.ErrorInfo` reason and metadata, when a client needs to act on it.
        info: Option<(String, Vec<(String, String)>)>,
    },
    /// RESOURCE_EXHAUSTED with `google.rpc.RetryInfo`: the caller's rate limit.
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    /// RESOURCE_EXHAUSTED with `google.rpc.RetryInfo`: too many failed authentications from
    /// the caller's address (`grpc::auth_failures`).
    #[error("too many failed authentications")]
    AuthFailuresLimited(std::time::Duration),
    /// The health probe finds the database unreachable (`health::gate`); the probe logged
    /// it once, so this is not logged per call.
    #[error("storage down")]
    StorageDown,
    /// Storage (or another dependency) is unreachable right now; retrying may work.
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("internal: {0:#}")]
    Internal(anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        AppError::Internal(anyhow::anyhow!("{msg}"))
    }

    pub fn failed_precondition(msg: impl Into<String>) -> Self {
        AppError::FailedPrecondition {
            message: msg.into(),
            info: None,
        }
    }
}

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> Self {
        AppError::Invalid(e)
    }
}

impl From<crate::domain::Rejection> for AppError {
    fn from(r: crate::domain::Rejection) -> Self {
        use crate::domain::Rejection;
        match r {
            Rejection::Invalid(i) => AppError::Invalid(i),
            Rejection::NotFound(m) => AppError::NotFound(m),
            Rejection::Forbidden(m) => AppError::PermissionDenied(m),
            Rejection::Precondition(m) => AppError::failed_precondition(m),
        }
    }
}

impl From<DieselError> for AppError {
    fn from(e: DieselError) -> Self {
        let retryable = match &e {
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
            // diesel-async's name for a connection that broke mid-request.
            DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _) => true,
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
            // SQLite: another writer held the lock past busy_timeout. PostgreSQL: the backend
            // was terminated or the server is going down or coming up (SQLSTATE class 57,
            // which diesel does not expose; its messages are stable). The connection is gone
            // and is discarded; a retry gets another.
            DieselError::DatabaseError(_, info) => {
                let m = info.message();
                m.contains("database is locked")
                    || m.starts_with("terminating connection")
                    || m.starts_with("the database system is")
            }
            _ => false,
        };
        if retryable {
            AppError::Unavailable(e.into())
        } else {
            AppError::Internal(e.into())
        }
    }
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for AppError {
    fn from(e: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        AppError::Unavailable(anyhow::anyhow!("database pool: {e}"))
    }
}

/// What a client sees whenever storage is unreachable.
const UNAVAILABLE: &str = "Service temporarily unavailable, retry with backoff";

/// Backstop bounds (bytes). Percent-encoding can triple a message on the wire and base64
/// adds a third to the details; within these bounds the worst case stays near 6 KiB.
const MESSAGE_MAX_BYTES: usize = 1000;
/// ErrorInfo metadata entries.
const VIOLATIONS_MAX: usize = 5;
const DETAIL_MAX_BYTES: usize = 300;
/// Every violation of a request is listed while they fit in this many bytes (field +
/// description); a request with more gets the first ones.
const VIOLATIONS_MAX_BYTES: usize = 3000;

/// `s` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max - '…'.len_utf8();
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn message(m: String) -> String {
    bounded(m, MESSAGE_MAX_BYTES)
}

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        match e {
            AppError::Invalid(inv) => {
                let mut details = ErrorDetails::new();
                let mut budget = VIOLATIONS_MAX_BYTES;
                for v in inv.violations {
                    let field = bounded(v.field, DETAIL_MAX_BYTES);
                    let description = bounded(v.description, DETAIL_MAX_BYTES);
                    let Some(left) = budget.checked_sub(field.len() + description.len()) else {
                        break;
                    };
                    budget = left;
                    details.add_bad_request_violation(field, description);
                }
                Status::with_error_details(Code::InvalidArgument, message(inv.message), details)
            }
            AppError::Unauthenticated => Status::unauthenticated("Unauthorized"),
            AppError::PermissionDenied(m) => Status::permission_denied(message(m)),
            AppError::NotFound(m) => Status::not_found(message(m)),
            AppError::AlreadyExists(m) => Status::already_exists(message(m)),
            AppError::FailedPrecondition { message: m, info } => match info {
                None => Status::failed_precondition(message(m)),
                Some((reason, metadata)) => {
                    let details = ErrorDetails::with_error_info(
                        reason,
                        "checkout.v1",
                        metadata
                            .into_iter()
                            .take(VIOLATIONS_MAX)
                            .map(|(k, v)| (k, bounded(v, DETAIL_MAX_BYTES)))
                            .collect::<std::collections::HashMap<_, _>>(),
                    );
                    Status::with_error_details(Code::FailedPrecondition, message(m), details)
                }
            },
            AppError::RateLimited(wait) => {
                let details = ErrorDetails::with_retry_info(Some(wait));
                let message = format!(
                    "Rate limit exceeded for this API key; retry in {} ms",
                    wait.as_millis().max(1)
                );
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            AppError::AuthFailuresLimited(wait) => {
                let details = ErrorDetails::with_retry_info(Some(wait));
                let message = format!(
                    "Too many failed authentications from this address; retry in {} ms",
                    wait.as_millis().max(1)
                );
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            AppError::StorageDown => Status::unavailable(UNAVAILABLE),
            AppError::Unavailable(cause) => {
                tracing::warn!(
                    error = format!("{cause:#}"),
                    "request failed: dependency unavailable"
                );
                Status::unavailable(UNAVAILABLE)
            }
            AppError::Internal(cause) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "request failed: internal error"
                );
                Status::internal("Internal server error")
            }
        }
    }
}

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Status {
        AppError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounded_cuts_on_a_char_boundary() {
        assert_eq!(super::bounded("short".into(), 10), "short");
        let cut = super::bounded("é".repeat(100), 10);
        assert!(cut.len() <= 10 && cut.ends_with('…'), "{cut}");
    }
}
