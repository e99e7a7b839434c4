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
pub mod health;
pub mod listener;
pub mod metrics;
pub mod secrets;
pub mod seed;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod webhook_dns;
pub mod workers;

/// jemalloc for every binary of the package (the service, its tools and benchmarks, the
/// tests): after storms of thousands of connections glibc malloc kept the freed memory in its
/// per-thread arenas, RSS stayed at the peak and crept up round after round (README,
/// Performance). Not in the library's own unit tests, which count allocations with an
/// allocator of their own (`metrics::tests`).
#[cfg(all(feature = "jemalloc", not(test)))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts: a background thread returns the freed pages of
/// every arena to the system after a second. Without it pages are only returned during later
/// allocator calls in the same arena, so an idle worker thread would keep them.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Generated protobuf and gRPC code for `checkout.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("checkout.v1");

    /// Serialized descriptors of `checkout.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("checkout_descriptor");
}
