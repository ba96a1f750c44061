//! Images built for stages that name none: the registry is asked for the content-hash tag
//! first; only when it lacks it is the build (a ConfigMap of the context and a BuildKit Job,
//! [`crate::images::build_objects`]) created in the cluster and waited for. A failed build
//! ends with the build Pod's log, for the stage run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{ListParams, LogParams, PostParams};
use tokio::time::Instant;

use super::api::{self, ClusterError, Pace};
use crate::clusters::ClusterImages;
use crate::images::{
    BuildJobSettings, BuildPlan, Registry, RegistryCredentials, RegistryError, build_objects,
    credentials_from_docker_config,
};

/// How often a running build is looked at.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Lines of the build's log kept for the stage run.
const LOG_LINES: i64 = 400;

/// Where a stage's image stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildState {
    /// Looked up, or being built.
    Pending,
    /// In the registry.
    Ready(String),
    /// The build failed, or could not be made: why, and its log when it ran.
    Failed { reason: String, log: Option<String> },
}

/// A build's state, shared between its task and the executor.
pub type SharedBuild = Arc<Mutex<BuildState>>;

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error("looking up {image}: {source}")]
    Lookup { image: String, source: RegistryError },
    #[error("the build of {image} cannot be made: {source}")]
    Objects { image: String, source: crate::images::BuildJobError },
    #[error("creating the build of {image}: {source}")]
    Create { image: String, source: ClusterError },
    #[error("the build of {image} failed: {why}")]
    Failed { image: String, why: String, log: Option<String> },
    #[error("the build of {image} did not end within {waited:?}")]
    TimedOut { image: String, waited: Duration },
}

/// Where a cluster builds: its client, namespace and image settings.
pub struct BuildSite {
    pub client: kube::Client,
    pub pace: Arc<Pace>,
    pub namespace: String,
    pub images: ClusterImages,
}

/// Looks the image of `plan` up and builds it when absent; the outcome goes to `state`.
pub async fn ensure(site: BuildSite, plan: BuildPlan, snapshot: Vec<u8>, state: SharedBuild) {
    let outcome = match ensure_image(&site, &plan, &snapshot).await {
        Ok(image) => BuildState::Ready(image),
        Err(error) => {
            let log = match &error {
                BuildError::Failed { log, .. } => log.clone(),
                _ => None,
            };
            tracing::error!(image = %plan.image, %error, "no image for the stage");
            BuildState::Failed { reason: error.to_string(), log }
        }
    };
    *state.lock().unwrap_or_else(|p| p.into_inner()) = outcome;
}

async fn ensure_image(site: &BuildSite, plan: &BuildPlan, snapshot: &[u8]) -> Result<String, BuildError> {
    let image = plan.image.clone();
    let host = site.images.registry.split('/').next().unwrap_or_default().to_string();
    let registry = Registry::new(if site.images.insecure { vec![host.clone()] } else { Vec::new() });
    let credentials = registry_credentials(&host);
    let present = registry
        .has_image(&image, credentials.as_ref())
        .await
        .map_err(|source| BuildError::Lookup { image: image.clone(), source })?;
    if present {
        tracing::info!(%image, "the registry has the stage's image: no build");
        return Ok(image);
    }
    let settings = BuildJobSettings {
        namespace: site.namespace.clone(),
        builder_image: site.images.builder_image.clone(),
        push_secret: site.images.push_secret.clone(),
        insecure_registry: site.images.insecure,
        ..BuildJobSettings::default()
    };
    let objects = build_objects(plan, snapshot, &settings)
        .map_err(|source| BuildError::Objects { image: image.clone(), source })?;
    let name = objects.job.metadata.name.clone().unwrap_or_default();
    tracing::info!(%image, job = %name, "building the stage's image in the cluster");
    let config_maps: Api<ConfigMap> = Api::namespaced(site.client.clone(), &site.namespace);
    let jobs: Api<Job> = Api::namespaced(site.client.clone(), &site.namespace);
    let params = PostParams::default();
    // Named after the tag: another run building the same image makes them first (409), and
    // this one waits for that build.
    for created in [
        api::call(&site.pace, || config_maps.create(&params, &objects.config_map)).await.map(|_| ()),
        api::call(&site.pace, || jobs.create(&params, &objects.job)).await.map(|_| ()),
    ] {
        match created {
            Ok(()) => {}
            Err(error) if error.is_conflict() => {}
            Err(source) => return Err(BuildError::Create { image, source }),
        }
    }
    let waited = Duration::from_secs(settings.timeout_seconds.max(0) as u64) + Duration::from_secs(60);
    let deadline = Instant::now() + waited;
    loop {
        match api::call(&site.pace, || jobs.get(&name)).await {
            Ok(job) => {
                let status = job.status.unwrap_or_default();
                if status.succeeded.unwrap_or(0) > 0 {
                    return Ok(image);
                }
                let failed = status
                    .conditions
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| matches!(c.type_.as_str(), "Failed" | "FailureTarget") && c.status == "True");
                // backoffLimit is 0: one failed Pod fails the build, before the condition shows.
                if failed.is_some() || status.failed.unwrap_or(0) > 0 {
                    let why = failed.and_then(|c| c.message.or(c.reason)).unwrap_or_else(|| "its Pod failed".into());
                    let log = build_log(site, &name).await;
                    return Err(BuildError::Failed { image, why, log });
                }
            }
            Err(error) if error.is_not_found() => {
                let why = "its Job was deleted before it ended".to_string();
                return Err(BuildError::Failed { image, why, log: None });
            }
            Err(error) => tracing::warn!(job = %name, %error, "cannot read the build Job; trying again"),
        }
        if Instant::now() >= deadline {
            return Err(BuildError::TimedOut { image, waited });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The last lines of the log of the build Job's Pod, when there is one.
async fn build_log(site: &BuildSite, job: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(site.client.clone(), &site.namespace);
    let all = ListParams::default();
    let listed = api::call(&site.pace, || pods.list(&all)).await.ok()?;
    let pod = listed.items.into_iter().find(|pod| {
        pod.metadata.owner_references.iter().flatten().any(|owner| owner.kind == "Job" && owner.name == job)
    })?;
    let name = pod.metadata.name?;
    let params = LogParams { tail_lines: Some(LOG_LINES), ..LogParams::default() };
    api::call(&site.pace, || pods.logs(&name, &params)).await.ok()
}

/// Credentials for `host` from the Docker config the scheduler runs with (`$DOCKER_CONFIG`,
/// else `~/.docker`): what the chart mounts from the push Secret.
fn registry_credentials(host: &str) -> Option<RegistryCredentials> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
    let json = std::fs::read(dir.join("config.json")).ok()?;
    match credentials_from_docker_config(&json, host) {
        Ok(credentials) => credentials,
        Err(error) => {
            tracing::warn!(file = %dir.join("config.json").display(), %error, "registry credentials unreadable");
            None
        }
    }
}
