//! A gRPC server that answers only the standard health service (SERVING), over h2c: the upstream of
//! the gRPC scenario of `make bench`. Usage: grpc_health PORT
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: grpc_health PORT");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tonic::transport::Server::builder()
        .add_service(health)
        .serve(([127, 0, 0, 1], port).into())
        .await
        .expect("serve");
}
