//! `checkout health`: a gRPC health probe (grpc.health.v1.Health/Check) for container
//! HEALTHCHECKs and orchestrators, so the image needs no separate grpc_health_probe binary.
//! Exit codes follow grpc_health_probe's, which probe configurations already expect:
//! 0 SERVING, 2 unreachable, 3 the call failed or timed out, 4 not SERVING. Success prints
//! `SERVING` on stdout; any failure prints one line saying why on stderr.
use clap::Args;
use std::{process::ExitCode, time::Duration};
use tonic::{transport::Endpoint, Code};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The server to probe: `host:port`, `:port` (loopback) or `http://host:port`.
    #[arg(long, env = "CHECKOUT_HEALTH_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// The service to ask about; empty means the server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,
    /// The whole probe (connecting included) fails after this long.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// Why a probe failed: the exit code and the line printed.
struct Failure(u8, String);

pub async fn run_health(args: HealthArgs) -> ExitCode {
    let limit = Duration::from_millis(args.timeout_ms.max(1));
    let outcome = match tokio::time::timeout(limit, probe(&args, limit)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure(
            3,
            format!("timed out after {} ms: {}", args.timeout_ms, args.addr),
        )),
    };
    match outcome {
        Ok(()) => {
            println!("SERVING");
            ExitCode::SUCCESS
        }
        Err(Failure(code, why)) => {
            eprintln!("unhealthy: {why}");
            ExitCode::from(code)
        }
    }
}

async fn probe(args: &HealthArgs, limit: Duration) -> Result<(), Failure> {
    let uri = endpoint_uri(&args.addr);
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Failure(2, format!("bad address {:?}: {e}", args.addr)))?
        .connect_timeout(limit);
    let channel = endpoint.connect().await.map_err(|e| {
        // The transport error itself only says "transport error"; its root cause says why
        // (e.g. "Connection refused").
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        Failure(2, format!("unreachable: {}: {cause}", args.addr))
    })?;
    let request = HealthCheckRequest {
        service: args.service.clone(),
    };
    let reply = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|s| match s.code() {
            // tonic-health answers NOT_FOUND for a service it does not know.
            Code::NotFound => Failure(3, format!("unknown service {:?}", args.service)),
            code => Failure(3, format!("health check failed: {code:?}: {}", s.message())),
        })?
        .into_inner();
    match ServingStatus::try_from(reply.status) {
        Ok(ServingStatus::Serving) => Ok(()),
        Ok(status) => Err(Failure(4, status.as_str_name().to_owned())),
        Err(_) => Err(Failure(4, format!("unknown status {}", reply.status))),
    }
}

/// `host:port` and `:port` (loopback, as `--listen-addr` reads it) become `http://…`.
fn endpoint_uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else if let Some(port) = addr.strip_prefix(':') {
        format!("http://127.0.0.1:{port}")
    } else {
        format!("http://{addr}")
    }
}
