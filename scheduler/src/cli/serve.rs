//! `concurrent serve`: the scheduler as a service hosting any number of runs, on one port for
//! gRPC and REST, until SIGTERM or Ctrl-C; runs left unfinished are resumed at the next start.

use std::time::Duration;

use concurrent_mlflow::tracking::MlflowClient;

use super::preflight::check_state_dir;
use super::run::{absolute, open_store};
use super::services::{Services, TrackingChoice, check_named_services};
use super::{EXIT_INVALID, EXIT_OK, EXIT_SERVICE, ServeArgs};
use crate::executor::local::LocalConfig;
use crate::executor::{LocalExecutor, WorkerPool};
use crate::queue::Queue;
use crate::service::auth::Tokens;
use crate::service::server::{app, bind, serve as serve_http, serve_tls};
use crate::service::tls::server_config;
use crate::service::{HostConfig, PodWorkers, RunHost};

/// Time workers get to stop politely when the service stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the service; returns the exit code.
pub async fn serve(args: ServeArgs) -> u8 {
    let tokens = match &args.token_file {
        Some(path) => match Tokens::read(path) {
            Ok(tokens) => tokens,
            Err(error) => {
                say!("error: --token-file: {error}");
                return EXIT_INVALID;
            }
        },
        None => Tokens::none(),
    };
    if !args.listen.ip().is_loopback() && !tokens.required() {
        say!(
            "error: --listen {}: the service would take runs from the network without a token; give \
             --token-file FILE (lines `name:token`) or listen on 127.0.0.1",
            args.listen
        );
        return EXIT_INVALID;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match server_config(cert, key) {
            Ok(tls) => Some(tls),
            Err(error) => {
                say!("error: {error}");
                return EXIT_INVALID;
            }
        },
        _ => None,
    };
    let project_root = match &args.project_root {
        Some(root) => match root.canonicalize() {
            Ok(root) => Some(root),
            Err(error) => {
                say!("error: --project-root {}: {error}", root.display());
                return EXIT_INVALID;
            }
        },
        None => None,
    };
    let tracking = TrackingChoice::from_flag(args.tracking.as_deref());
    if let Err(code) = check_named_services(&tracking, "Default").await {
        return code;
    }
    let state_dir = absolute(&args.state_dir);
    if !check_state_dir(&state_dir) {
        return EXIT_INVALID;
    }
    let store = match open_store(&state_dir) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let (listener, bound) = match bind(args.listen).await {
        Ok(bound) => bound,
        Err(error) => {
            say!("error: --listen: {error}");
            return EXIT_INVALID;
        }
    };
    let services = match Services::start(&state_dir, &tracking).await {
        Ok(services) => services,
        Err(error) => {
            say!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    let code = match host(&args, &services, store, project_root, &state_dir).await {
        Ok(host) => run_until_stopped(host, tokens, tls, listener, bound).await,
        Err(code) => code,
    };
    services.stop().await;
    code
}

/// Connects the host to NATS and MLflow and resumes the runs left unfinished.
async fn host(
    args: &ServeArgs,
    services: &Services,
    store: crate::store::Store,
    project_root: Option<std::path::PathBuf>,
    state_dir: &std::path::Path,
) -> Result<RunHost, u8> {
    let queue = Queue::connect(&services.nats_url).await.map_err(|error| {
        say!("error: {error}");
        EXIT_SERVICE
    })?;
    let mlflow = services.tracking_uri.as_deref().map(MlflowClient::new).transpose().map_err(|error| {
        say!("error: tracking server: {error}");
        EXIT_INVALID
    })?;
    let max_workers =
        args.max_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
    let executor = LocalExecutor::new(LocalConfig {
        worker_binary: LocalExecutor::default_worker_binary(),
        nats_url: services.nats_url.clone(),
        max_workers,
        idle_timeout: args.idle_timeout,
        state_dir: state_dir.to_path_buf(),
    });
    let base_dir = project_root.clone().unwrap_or_else(|| absolute(std::path::Path::new(".")));
    let pods = match &args.clusters {
        None => None,
        Some(path) => match crate::clusters::load_clusters(path) {
            Ok(clusters) => {
                Some(PodWorkers { clusters, nats_url: services.nats_url.clone(), idle_timeout: args.idle_timeout })
            }
            Err(errors) => {
                for line in errors.lines() {
                    say!("error: {line}");
                }
                return Err(EXIT_INVALID);
            }
        },
    };
    let config = HostConfig { state_dir: state_dir.to_path_buf(), base_dir, project_root, pods };
    let host = RunHost::new(config, store, queue, mlflow, WorkerPool::new(executor));
    match host.resume_unfinished().await {
        Ok(resumed) if !resumed.is_empty() => {
            say!("resumed {} unfinished runs: {}", resumed.len(), resumed.join(", "))
        }
        Ok(_) => {}
        Err(error) => {
            say!("error: {error}");
            return Err(EXIT_SERVICE);
        }
    }
    Ok(host)
}

/// Serves until SIGTERM or SIGINT, then stops the runs' workers and leaves the runs resumable.
async fn run_until_stopped(
    host: RunHost,
    tokens: Tokens,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    listener: tokio::net::TcpListener,
    bound: std::net::SocketAddr,
) -> u8 {
    let app = match app(host.clone(), tokens) {
        Ok(app) => app,
        Err(error) => {
            say!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    say!("concurrent serve: listening on {scheme}://{bound} (gRPC concurrent.v1.Scheduler and REST /api/v1)");
    let served = match tls {
        Some(tls) => serve_tls(listener, app, tls, stop_signal()).await,
        None => serve_http(listener, app, stop_signal()).await,
    };
    say!("concurrent serve: stopping; unfinished runs resume at the next start");
    host.stop(STOP_GRACE).await;
    match served {
        Ok(()) => EXIT_OK,
        Err(error) => {
            say!("error: {error}");
            EXIT_SERVICE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
