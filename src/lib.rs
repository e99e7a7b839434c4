//! checkout: a gRPC service that opens checkout sessions with locked prices, hands the
//! buyer to a hosted payment page, and ends each session exactly once.
pub mod cli;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod events;
pub mod feed;
pub mod grpc;
pub mod metrics;
pub mod secrets;
pub mod seed;
pub mod startup;
pub mod telemetry;
pub mod webhook_dns;
pub mod workers;

/// Generated protobuf and gRPC code for `checkout.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("checkout.v1");

    /// Serialized descriptors of `checkout.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("checkout_descriptor");
}
