//! `concurrent-fake-cluster`: a fake Kubernetes cluster on a free loopback port, for tests and
//! for trying the Kubernetes executor by hand. Writes a kubeconfig (context = `--name`), prints
//! `ready`, and runs until killed (or, with `--stop-when-stdin-closes`, until its standard
//! input closes); its Pods' processes are killed when it stops.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use concurrent_tests::fake_cluster::{self, Options};

#[derive(Parser)]
#[command(
    about = "A fake Kubernetes API server, Job controller, scheduler and kubelet that runs Pods as local processes"
)]
struct Args {
    /// Cluster name: the kubeconfig's cluster, user and context.
    #[arg(long)]
    name: String,
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Allocatable CPU per node (`2`, `500m`).
    #[arg(long, default_value = "2")]
    node_cpu: String,
    /// Allocatable memory per node (`8Gi`).
    #[arg(long, default_value = "8Gi")]
    node_memory: String,
    #[arg(long, default_value_t = 0)]
    node_gpus: u64,
    /// `CONTAINER_DIR=HOST_DIR`: where a container path is on this machine (repeatable).
    #[arg(long = "path-map")]
    path_maps: Vec<String>,
    /// Namespaces that exist from the start besides `default` (repeatable).
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Pods' working dirs and logs (default: a temp dir removed at exit).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Stop when standard input closes (for a parent process that may die).
    #[arg(long)]
    stop_when_stdin_closes: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let quantity = |text: &str, what: &str| -> anyhow::Result<u128> {
        fake_cluster::quantity_milli(text).with_context(|| format!("--{what}: not a quantity: {text:?}"))
    };
    let mut path_maps = Vec::new();
    for map in &args.path_maps {
        let Some((container, host)) = map.split_once('=') else {
            bail!("--path-map: expected CONTAINER_DIR=HOST_DIR, found {map:?}")
        };
        let host = std::path::absolute(host).with_context(|| format!("--path-map {map}"))?;
        path_maps.push((PathBuf::from(container), host));
    }
    let temp = tempfile::tempdir()?;
    let options = Options {
        name: args.name.clone(),
        nodes: args.nodes,
        node_cpu_millis: quantity(&args.node_cpu, "node-cpu")? as u64,
        node_memory_bytes: (quantity(&args.node_memory, "node-memory")? / 1000) as u64,
        node_gpus: args.node_gpus,
        path_maps,
        state_dir: args.state_dir.clone().unwrap_or_else(|| temp.path().to_path_buf()),
        namespaces: args.namespaces.clone(),
    };
    let running = fake_cluster::start(options).await?;
    let config = fake_cluster::kubeconfig(&args.name, running.addr, "default");
    std::fs::write(&args.kubeconfig, config).with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    println!("ready {}", running.addr);
    let stdin_closed = async {
        if args.stop_when_stdin_closes {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stdin_closed => {}
    }
    running.stop_pods();
    Ok(())
}
