//! The Kubernetes side of the CLI: `--clusters FILE` read and checked against the DAG (exit 2
//! naming the place), each stage's image, and `concurrent clusters`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use concurrent_mlflow::project::{MlProject, ProjectEnv};

use super::{EXIT_INVALID, EXIT_OK, EXIT_SERVICE, OutputFormat};
use crate::clusters::{ClustersFile, load_clusters, unknown_clusters};
use crate::dag::Dag;
use crate::executor::kubernetes::survey::{ClusterSurvey, survey};
use crate::executor::kubernetes::{LaunchImage, StageLaunch};

/// Options of `concurrent clusters`.
#[derive(Debug, Args)]
pub struct ClustersArgs {
    /// The clusters file.
    #[arg(long, value_name = "FILE")]
    pub clusters: PathBuf,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// A stage has no image to run in.
#[derive(Debug, thiserror::Error)]
pub enum NoImage {
    #[error(
        "stages.{stage}.image: required on Kubernetes: give the stage an `image`, its MLproject a \
         docker_env image, or a cluster of the clusters file `images: {{registry: …}}` to build it in{}",
        cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
    )]
    Missing { stage: String, cause: Option<concurrent_mlflow::project::ProjectError> },
    #[error("stages.{stage}: {source}")]
    NotBuildable { stage: String, source: crate::images::ImageError },
}

/// Each stage's image (its `image`, else its MLproject's `docker_env` image, else one built
/// in a cluster of `clusters` that says where to push it) and resources.
pub fn stage_launches(dag: &Dag, clusters: &ClustersFile) -> Result<BTreeMap<String, StageLaunch>, NoImage> {
    let mut launches = BTreeMap::new();
    for (name, stage) in &dag.stages {
        let image = match &stage.image {
            Some(image) => LaunchImage::Given(image.clone()),
            None => match MlProject::load(&stage.project_dir) {
                Ok(MlProject { env: ProjectEnv::Docker { image, .. }, .. }) => LaunchImage::Given(image),
                Ok(MlProject { env: ProjectEnv::CondaEnv(file), .. }) => {
                    let source = crate::images::ImageError::CondaNeedsImage { file };
                    return Err(NoImage::NotBuildable { stage: name.clone(), source });
                }
                Ok(MlProject { env, .. }) => {
                    if !clusters.clusters.iter().any(|c| c.images.is_some()) {
                        return Err(NoImage::Missing { stage: name.clone(), cause: None });
                    }
                    crate::images::load_python_env(&stage.project_dir, &env)
                        .map_err(|source| NoImage::NotBuildable { stage: name.clone(), source })?;
                    LaunchImage::Built { project_dir: stage.project_dir.clone(), env }
                }
                Err(error) => return Err(NoImage::Missing { stage: name.clone(), cause: Some(error) }),
            },
        };
        launches.insert(name.clone(), StageLaunch { image, resources: stage.resources.clone() });
    }
    Ok(launches)
}

/// Reads `--clusters FILE` for a run of `dag`; prints every error and returns `None` on any.
pub fn load_for_run(path: &std::path::Path, dag: &Dag) -> Option<ClustersFile> {
    let file = match load_clusters(path) {
        Ok(file) => file,
        Err(errors) => {
            for line in errors.lines() {
                say!("error: {line}");
            }
            return None;
        }
    };
    let mut ok = true;
    for (name, stage) in &dag.stages {
        for unknown in unknown_clusters(&file, &stage.clusters) {
            let known: Vec<&str> = file.clusters.iter().map(|c| c.name.as_str()).collect();
            say!(
                "error: stages.{name}.clusters: no cluster {unknown:?} in {} (it has {})",
                path.display(),
                known.join(", ")
            );
            ok = false;
        }
    }
    if let Err(error) = stage_launches(dag, &file) {
        say!("error: {error}");
        ok = false;
    }
    ok.then_some(file)
}

/// `concurrent clusters --clusters FILE`: each cluster's reachability, nodes, free room and
/// workers. Exits 0 when every cluster answers, 3 when one does not, 2 on a bad file.
pub async fn clusters(args: ClustersArgs) -> u8 {
    let file = match load_clusters(&args.clusters) {
        Ok(file) => file,
        Err(errors) => {
            for line in errors.lines() {
                say!("error: {line}");
            }
            return EXIT_INVALID;
        }
    };
    let surveys: Vec<ClusterSurvey> = futures::future::join_all(file.clusters.iter().map(survey)).await;
    match args.output {
        OutputFormat::Json => out!("{}", serde_json::json!({ "clusters": surveys })),
        OutputFormat::Text => {
            out!(
                "{:<20} {:<11} {:>5} {:>9} {:>10} {:>4} {:>8}",
                "CLUSTER",
                "REACHABLE",
                "NODES",
                "FREE CPU",
                "FREE MEM",
                "GPU",
                "WORKERS"
            );
            for s in &surveys {
                let reach = if s.reachable { "yes" } else { "no" };
                out!(
                    "{:<20} {:<11} {:>5} {:>9} {:>10} {:>4} {:>8}",
                    s.name,
                    reach,
                    s.nodes,
                    format!("{:.1}", s.free_cpu_millis as f64 / 1000.0),
                    format!("{:.1}Gi", s.free_memory_bytes as f64 / f64::from(1u32 << 30)),
                    s.free_gpus,
                    format!("{}/{}", s.workers, s.max_workers)
                );
            }
            for s in surveys.iter().filter(|s| !s.reachable) {
                say!("cluster {} cannot be reached: {}", s.name, s.error.as_deref().unwrap_or("unknown error"));
            }
        }
    }
    if surveys.iter().all(|s| s.reachable) { EXIT_OK } else { EXIT_SERVICE }
}
