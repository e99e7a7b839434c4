//! Why a business rule refused a request, in terms a client can act on. The gRPC layer maps
//! each kind to its status code; the messages are the SPEC's, word for word.
use super::Invalid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// INVALID_ARGUMENT
    Invalid(Invalid),
    /// NOT_FOUND
    NotFound(String),
    /// PERMISSION_DENIED
    Forbidden(String),
    /// FAILED_PRECONDITION
    Precondition(String),
}

impl From<Invalid> for Rejection {
    fn from(e: Invalid) -> Self {
        Rejection::Invalid(e)
    }
}
