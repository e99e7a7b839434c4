//! The server around the services: reflection, health, limits, shutdown.
use crate::{
    fixtures::unique_slug,
    helpers::{Ctx, TestApp},
};
use checkout::pb;
use std::time::{Duration, Instant};
use tonic::Code;

const SERVICES: [&str; 3] = [
    "checkout.v1.AdminService",
    "checkout.v1.CheckoutService",
    "checkout.v1.HostedCheckoutService",
];

fn assert_lists_services(mut names: Vec<String>) {
    names.sort();
    for s in SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
}

pub async fn reflection_v1_and_v1alpha_list_the_services(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    {
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            stream.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1: expected a service list");
        };
        assert_lists_services(list.service.into_iter().map(|s| s.name).collect());
    }
    {
        use tonic_reflection::pb::v1alpha::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            stream.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1alpha: expected a service list");
        };
        assert_lists_services(list.service.into_iter().map(|s| s.name).collect());
    }
}

pub async fn health_is_serving(ctx: Ctx) {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let app = TestApp::spawn(&ctx).await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in std::iter::once("").chain(SERVICES) {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
}

/// Every connection the server accepts has TCP_NODELAY: with Nagle on, a reply written in
/// two pieces (message, then trailers) waited ~40 ms for the client's delayed ACK. The
/// server runs in this process, so its accepted sockets are among this process's file
/// descriptors: those whose local port is the server's and that have a peer.
pub async fn accepted_connections_have_nodelay(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
        clients.push(health);
    }
    let mut accepted = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is open (just listed) and only borrowed for these calls;
        // a descriptor closed meanwhile makes the calls fail, which is skipped.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        let has_peer = socket.peer_addr().is_ok_and(|a| a.as_socket().is_some());
        if local == Some(app.addr) && has_peer {
            accepted += 1;
            assert!(
                socket.tcp_nodelay().unwrap(),
                "an accepted socket without TCP_NODELAY"
            );
        }
    }
    assert!(
        accepted >= 3,
        "found {accepted} accepted connections, expected at least 3"
    );
    drop(clients);
}

pub async fn oversized_request_is_refused(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let slug = unique_slug("big");
    let big = pb::CreateStoreRequest {
        slug: slug.clone(),
        name: "x".repeat(300 * 1024),
        ..Default::default()
    };
    let status = app
        .admin()
        .create_store(app.platform(big))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // Nothing was written: the slug is still free.
    let small = pb::CreateStoreRequest {
        slug,
        name: "Small".into(),
        ..Default::default()
    };
    app.admin()
        .create_store(app.platform(small))
        .await
        .expect("slug still free");
}

pub async fn shutdown_is_prompt(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let addr = app.addr;
    let started = Instant::now();
    app.stop(Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // The port is closed afterwards.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
