//! The gRPC edge: one file per proto service with thin handlers, the auth layer, and the
//! conversions between protobuf messages and domain values.
pub mod admin;
pub mod admin_lists;
pub mod admin_pb;
pub mod admin_webhooks;
pub mod auth;
pub mod auth_cache;
pub mod auth_failures;
pub mod browser;
pub mod checkout;
pub mod codec;
pub mod convert;
pub mod feed;
pub mod header_limit;
pub mod hosted;
pub mod page_token;
pub mod rate_limit;
pub mod rpc_layer;
pub mod session_input;
pub mod session_pb;
pub mod watch;
