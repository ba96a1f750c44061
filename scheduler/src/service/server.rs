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

/// How long calls in flight get to finish once the service stops.
const DRAIN_CALLS: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `app` over TLS on `listener` until `shutdown` completes; calls in flight get
/// [`DRAIN_CALLS`] to finish. A client that fails its handshake is dropped, named in the log.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: std::sync::Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let builder = Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_CALLS, graceful.shutdown()).await.is_err() {
        tracing::warn!("calls still in flight after {DRAIN_CALLS:?} were cut");
    }
    Ok(())
}
