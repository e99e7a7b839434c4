//! Business rules and types. Nothing here knows about gRPC or SQL: values are parsed once
//! at the edge into these types ("parse, don't validate") and are valid from then on.
pub mod catalog;
pub mod checkout;
pub mod email;
pub mod environment;
pub mod feed;
pub mod ids;
pub mod invalid;
pub mod lock;
pub mod money;
pub mod pricing;
pub mod rejection;
pub mod session_plan;
pub mod session_state;
pub mod store;
pub mod time;
pub mod webhook;
pub mod webhook_subscription;

pub use environment::Environment;
pub use invalid::{quoted, Invalid, Violations};
pub use rejection::Rejection;
