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

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        match e {
            AppError::Invalid(inv) => {
                let mut details = ErrorDetails::new();
                for v in &inv.violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                Status::with_error_details(Code::InvalidArgument, inv.message, details)
            }
            AppError::Unauthenticated => Status::unauthenticated("Unauthorized"),
            AppError::PermissionDenied(m) => Status::permission_denied(m),
            AppError::NotFound(m) => Status::not_found(m),
            AppError::AlreadyExists(m) => Status::already_exists(m),
            AppError::FailedPrecondition { message, info } => match info {
                None => Status::failed_precondition(message),
                Some((reason, metadata)) => {
                    let details = ErrorDetails::with_error_info(
                        reason,
                        "checkout.v1",
                        metadata
                            .into_iter()
                            .collect::<std::collections::HashMap<_, _>>(),
                    );
                    Status::with_error_details(Code::FailedPrecondition, message, details)
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
            AppError::Unavailable(cause) => {
                tracing::warn!(
                    error = format!("{cause:#}"),
                    "request failed: dependency unavailable"
                );
                Status::unavailable("Service temporarily unavailable, retry with backoff")
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
