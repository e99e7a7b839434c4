use checkout::{
    cli::{run_admin, run_events, run_health, Cli, Command},
    config::ServeConfig,
    startup::{shutdown_signal, Application},
    telemetry,
};
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(config) => serve(config).await,
        Command::Migrate(db) => {
            let _ = telemetry::init("text", None);
            checkout::db::Db::migrate(&db.database_url).await.map(|()| {
                println!("migrations applied");
            })
        }
        Command::Admin(args) => run_admin(args).await,
        // Its own exit codes (grpc_health_probe's), not the generic failure.
        Command::Health(args) => return run_health(args).await,
        Command::Events(args) => run_events(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&config.log.log_format, config.log.otlp_endpoint.as_deref())?;
    let app = Application::build(config).await?;
    // Before the banner: a caller may stop the service as soon as it has seen it.
    let stop = shutdown_signal();
    print_banner(&app);
    let served = app.run_until_stopped(stop).await;
    telemetry.shutdown().await;
    served
}

/// What a developer needs on first start, on stdout (secrets are never logged).
fn print_banner(app: &Application) {
    let addr = app.local_addr();
    let target = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("checkout is serving gRPC on {addr}");
    if app.tls_enabled() {
        println!(
            "TLS is on: in the grpcurl commands below, use -cacert <CA file> instead of -plaintext"
        );
    }
    if let Some(token) = app.generated_platform_token() {
        println!("\nPlatform token (generated for this run; set CHECKOUT_PLATFORM_TOKEN to choose one):\n  {token}");
    }
    let Some(seed) = app.demo_seed() else {
        println!("\nTry: grpcurl -plaintext {target} list");
        return;
    };
    println!(
        "\nDemo store \"{}\" ({}) seeded: test environment, return origin {}.",
        seed.slug, seed.store_id, seed.origin
    );
    println!(
        "Test API key (shown once; only its hash is stored):\n  {}",
        seed.api_key
    );
    for (name, id) in &seed.products {
        println!("  product {id}  {name}");
    }
    println!("  coupon  {} (100% off)", seed.coupon_code);
    let token = app
        .generated_platform_token()
        .unwrap_or("$CHECKOUT_PLATFORM_TOKEN");
    let (_, first_product) = &seed.products[0];
    let (_, free_product) = &seed.products[1];
    println!("\nTry it:");
    println!("  grpcurl -plaintext {target} list");
    println!("  grpcurl -plaintext {target} grpc.health.v1.Health/Check");
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer {token}\" -d '{{\"store_id\":\"{}\"}}' {target} checkout.v1.AdminService/GetStore",
        seed.store_id
    );
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer {token}\" -d '{{\"product_id\":\"{first_product}\"}}' {target} checkout.v1.AdminService/GetProduct"
    );
    let key = &seed.api_key;
    let origin = &seed.origin;
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {key}' -H 'x-context-environment: test' -H 'idempotency-key: demo-1' \\\n    -d '{{\"lines\":[{{\"product_id\":\"{first_product}\",\"quantity\":2}}],\"currency\":\"USD\",\"buyer_email\":\"Buyer@Example.com\",\"success_url\":\"{origin}/thanks?session={{CHECKOUT_SESSION_ID}}\"}}' \\\n    {target} checkout.v1.CheckoutService/CreateSession"
    );
    println!(
        "  grpcurl -plaintext -H 'x-store-slug: {}' -H 'x-context-environment: test' \\\n    -d '{{\"lines\":[{{\"product_id\":\"{free_product}\",\"quantity\":1}}],\"currency\":\"USD\"}}' {target} checkout.v1.CheckoutService/CreateSession",
        seed.slug
    );
}
