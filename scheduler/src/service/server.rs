//! One listening port for both faces of the service: gRPC (HTTP/2) and REST (HTTP/1.1 or
//! HTTP/2), told apart by their paths, with server reflection for gRPC tools.

use std::future::Future;
use std::net::SocketAddr;

use concurrent_proto::grpc as pb;

use super::auth::Tokens;
use super::grpc::GrpcScheduler;
use super::host::RunHost;
use super::rest::{self, ApiState};

/// The listener could not be set up or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Every route of the service.
pub fn app(host: RunHost, tokens: Tokens) -> Result<axum::Router, ServeError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let grpc = pb::scheduler_server::SchedulerServer::new(GrpcScheduler::new(host.clone(), tokens.clone()))
        .max_decoding_message_size(rest::MAX_BODY_BYTES);
    let grpc = tonic::service::Routes::new(grpc).add_service(reflection).prepare().into_axum_router();
    Ok(grpc.merge(rest::router(ApiState { host, tokens })))
}

/// Binds `addr`; returns the listener and the address bound (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// Serves `app` on `listener` until `shutdown` completes; calls in flight are finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(ServeError::Serve)
}
