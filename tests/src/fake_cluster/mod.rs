//! A fake Kubernetes cluster for tests and for trying the Kubernetes executor by hand: a real
//! HTTP API server (Jobs, Pods, Nodes, Namespaces, Secrets, Events; create, get, list with label
//! selectors, watch with resource versions and bookmarks, patch, delete with propagation; 404,
//! 409, 410 and 422 as `Status` objects; unknown fields refused by strict decoding of the
//! k8s-openapi types), a Job controller, a scheduler that binds Pods to nodes by their requests
//! (Pending and `Unschedulable` when nothing fits), and a kubelet that runs each Pod's container
//! command as a local process with the Pod's environment. Images are ignored: `path_maps` map
//! container paths (the worker binary's `/concurrent/bin`) to host directories, and init
//! containers count as done at once.

mod api;
mod controller;
mod kubelet;
mod quantity;
mod selector;
mod status;
mod store;
mod strict;
mod validate;
mod watch;
mod writes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::Notify;

pub use quantity::milli as quantity_milli;
pub use store::Kind;

/// How the fake cluster is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cluster's name: the kubeconfig's cluster, user and context name.
    pub name: String,
    pub nodes: u32,
    /// Allocatable CPU of each node, in millicores.
    pub node_cpu_millis: u64,
    /// Allocatable memory of each node, in bytes.
    pub node_memory_bytes: u64,
    /// `nvidia.com/gpu` of each node.
    pub node_gpus: u64,
    /// Container path prefix → host directory, for commands, arguments and the working dir.
    pub path_maps: Vec<(PathBuf, PathBuf)>,
    /// Where Pods get their working dirs and logs.
    pub state_dir: PathBuf,
    /// Namespaces that exist from the start besides `default`.
    pub namespaces: Vec<String>,
}

/// What the API server, the controller and the kubelet share.
pub struct Cluster {
    pub options: Options,
    pub store: Mutex<store::Store>,
    /// Woken on every change the controller may have to act on.
    pub kick: Notify,
    pub kubelet: kubelet::Kubelet,
}

/// A running fake cluster.
pub struct Running {
    pub addr: SocketAddr,
    pub cluster: Arc<Cluster>,
}

impl Running {
    /// Kills every Pod's process.
    pub fn stop_pods(&self) {
        self.cluster.kubelet.kill_all();
    }
}

/// Starts the API server on a free loopback port, with its controller and kubelet.
pub async fn start(options: Options) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&options.state_dir).with_context(|| format!("creating {}", options.state_dir.display()))?;
    let cluster = Arc::new(Cluster {
        kubelet: kubelet::Kubelet::new(options.state_dir.join("pods")),
        options,
        store: Mutex::new(store::Store::new()),
        kick: Notify::new(),
    });
    controller::seed(&cluster);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the API server")?;
    let addr = listener.local_addr()?;
    let app = api::router(cluster.clone());
    // As the API server does: small answers go out at once, not after a delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    tokio::spawn(controller::run(cluster.clone()));
    Ok(Running { addr, cluster })
}

/// The kubeconfig that points kube clients (and kubectl) at a fake cluster.
pub fn kubeconfig(name: &str, addr: SocketAddr, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {name}\nclusters:\n- name: {name}\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: {namespace}\n\
         users:\n- name: {name}\n  user:\n    token: fake-cluster-token\n"
    )
}
